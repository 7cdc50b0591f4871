import json

import numpy as np
import pytest

from adaptloop.train import load_trained
from adaptloop.train.base import FitContext
from adaptloop.train.ensemble import EnsembleTrainer, simplex_grid
from adaptloop.train.fake import FakeModel, FakeTrainer
from adaptloop.types import Example, Pipeline, TaskSpec


def test_simplex_grid_sums_to_one():
    g = simplex_grid(3, 0.5)
    assert sorted(g) == sorted([(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0),
                                (0.5, 0.5, 0.0), (0.5, 0.0, 0.5), (0.0, 0.5, 0.5)])


def test_ensemble_is_no_worse_than_its_best_member_on_dev(tmp_path):
    spec = TaskSpec("t", "p", "classification", ("pay", "card"))
    train = [Example("pay bill now", "pay"), Example("card lost", "card"),
             Example("pay rent", "pay"), Example("card stolen", "card")]
    dev = [Example("pay the bill", "pay"), Example("my card", "card"), Example("lost it", "card")]
    good, _ = FakeTrainer().fit(spec, Pipeline("raw", "frozen"), train, dev, FitContext())
    bad = FakeModel(spec.labels, np.zeros_like(good.centroids))  # uniform: always wrong-ish
    good.save(tmp_path / "a")
    bad.save(tmp_path / "b")
    pipe = Pipeline("raw", "ensemble", hparams={"members": [str(tmp_path / "a"), str(tmp_path / "b")]})
    model, result = EnsembleTrainer().fit(spec, pipe, train, dev, FitContext())
    good_acc = np.mean(good.predict_proba([e.text for e in dev]).argmax(1) == [0, 1, 1])
    assert result.dev_metrics["accuracy"] >= good_acc
    model.save(tmp_path / "ens")
    again = load_trained(tmp_path / "ens")
    texts = [e.text for e in dev]
    np.testing.assert_allclose(model.predict_proba(texts), again.predict_proba(texts))


def test_frozen_classifiers_in_a_saved_ensemble_embed_through_a_shared_cache(tmp_path):
    """Evaluation loads models with the workspace's embedding cache: a frozen classifier (also as an
    ensemble member or a thresholded base) then never loads its encoder for texts already embedded."""
    from adaptloop.train.classifier import EncoderClassifier
    from adaptloop.train.encoder import EmbeddingCache
    from adaptloop.train.ensemble import EnsembleModel
    from adaptloop.train.threshold import ThresholdModel

    enc = "no-such/encoder"  # loading it would raise: every vector must come from the cache
    cache = EmbeddingCache()
    texts = ["left", "right"]
    for t, v in zip(texts, np.eye(2, dtype=np.float32)):
        cache._rows[(enc, cache._key(t))] = v
    head = EncoderClassifier(["a", "b"], enc, np.eye(2) * 5, np.zeros(2))
    model = EnsembleModel([head, ThresholdModel(EncoderClassifier(["a", "b"], enc, np.eye(2) * 5, np.zeros(2)),
                                                np.zeros(2))], [0.5, 0.5])
    model.save(tmp_path / "m")
    probs = load_trained(tmp_path / "m", embeddings=cache).predict_proba(texts)
    assert probs.argmax(axis=1).tolist() == [0, 1]


def test_a_tagger_ensemble_averages_tag_probabilities_and_round_trips(tmp_path):
    """Taggers ensemble one level down: their per-word tag probabilities are averaged and decoded once, so
    a span two of three members find survives and one only one member finds does not; the ensemble
    saves, reloads and takes per-type thresholds as a tagger does."""
    from adaptloop.train.ensemble import TaggerEnsemble
    from adaptloop.train.fake import FakeTagger

    types = ("LOC", "PER")
    members = [FakeTagger(types, {"ann lee": "PER", "paris": "LOC"}), FakeTagger(types, {"ann lee": "PER"}),
               FakeTagger(types, {"lee": "PER", "paris": "LOC", "oslo": "LOC"})]
    for i, m in enumerate(members):
        m.save(tmp_path / f"m{i}")
    spec = TaskSpec("t", "p", "extraction", types, primary_metric="f1")
    pipe = Pipeline("raw", "ensemble", hparams={"members": [str(tmp_path / f"m{i}") for i in range(3)]})
    model, result = EnsembleTrainer().fit(spec, pipe, [], [], FitContext())  # no dev to choose on: all three
    assert isinstance(model, TaggerEnsemble) and result.chosen["weights"] == [1 / 3] * 3
    texts = ["Ann Lee flew to Paris.", "Oslo is cold."]
    spans = [[(d["start"], d["end"], d["label"]) for d in row] for row in model.predict_spans(texts)]
    assert spans == [[(0, 7, "PER"), (16, 21, "LOC")], []]  # Oslo: one member of three
    assert model.predict_spans(texts)[0][0]["score"] == pytest.approx(2 / 3, abs=1e-4)
    model.thresholds = {"LOC": 0.7}
    model.save(tmp_path / "ens")
    again = load_trained(tmp_path / "ens")
    assert isinstance(again, TaggerEnsemble) and again.kind == "tagger"
    assert [[d["label"] for d in row] for row in again.predict_spans(texts)] == [["PER"], []]


def test_of_more_than_two_taggers_the_ensemble_keeps_those_that_raise_dev_f1(tmp_path):
    """Forward selection on dev: the best tagger alone, its best partner, then only what raises dev F1; the
    weights name every candidate (0 for one left out), as a refit of the ensemble reads them."""
    from adaptloop.train.ensemble import TaggerEnsemble, select_taggers
    from adaptloop.train.fake import FakeTagger

    types = ("LOC", "PER")
    noise = FakeTagger(types, {"went": "LOC", "to": "PER"})
    good, also = (FakeTagger(types, {"ann": "PER", "paris": "LOC"}) for _ in range(2))
    dev = [Example("Ann went to Paris.", "", spans=((0, 3, "PER"), (12, 17, "LOC")))]
    assert select_taggers([noise, good, also], dev) == [1, 2]
    for i, m in enumerate([noise, good, also]):
        m.save(tmp_path / f"m{i}")
    spec = TaskSpec("t", "p", "extraction", types, primary_metric="f1")
    pipe = Pipeline("raw", "ensemble", hparams={"members": [str(tmp_path / f"m{i}") for i in range(3)]})
    model, result = EnsembleTrainer().fit(spec, pipe, [], dev, FitContext())
    assert isinstance(model, TaggerEnsemble) and len(model.members) == 2
    assert result.chosen["weights"] == [0.0, 0.5, 0.5] and "2 of 3" in result.notes
    assert [(d["start"], d["end"], d["label"]) for d in model.predict_spans([dev[0].text])[0]] == [
        (0, 3, "PER"), (12, 17, "LOC")]
    # an ensemble has two members at least: of two candidates both stay, whatever dev says
    pair = Pipeline("raw", "ensemble", hparams={"members": [str(tmp_path / "m1"), str(tmp_path / "m0")]})
    assert EnsembleTrainer().fit(spec, pair, [], dev, FitContext())[1].chosen["weights"] == [0.5, 0.5]


def test_a_tagger_ensemble_averages_taggers_that_cut_text_differently():
    """Members on different encoders cut text into different subwords: each member's probabilities go on
    the words (a word takes its first subword's), then are averaged."""
    from adaptloop.train.ensemble import TaggerEnsemble
    from adaptloop.train.fake import FakeTagger
    from adaptloop.train.tagger import on_words

    class Pieces(FakeTagger):  # a tokenizer that cuts every word of four letters or more in two
        encoder_name = "pieces"

        def token_probs(self, texts, batch_size=32):
            out = []
            for keys, p in super().token_probs(texts):
                k2, p2 = [], []
                for (s, e), row in zip(keys, p):
                    cut = [(s, s + 2), (s + 2, e)] if e - s >= 4 else [(s, e)]
                    inner = row.copy()
                    if row.argmax() % 2 == 1:  # B-t: the second piece continues it (I-t)
                        inner = np.zeros_like(row)
                        inner[row.argmax() + 1] = 1.0
                    k2 += cut
                    p2 += [row, inner][: len(cut)]
                out.append((k2, np.array(p2)))
            return out

    types = ("LOC", "PER")
    words = [(0, 3), (4, 7), (8, 12)]
    p = np.eye(5)[[1, 2, 0, 0]]  # "Ann" B-PER, "Lee" I-PER, then two pieces of "flew"
    assert on_words(words, [(0, 3), (4, 7), (8, 10), (10, 12)], p, 5).argmax(1).tolist() == [1, 2, 0]
    a, b = FakeTagger(types, {"ann lee": "PER"}), Pieces(types, {"ann lee": "PER", "paris": "LOC"})
    ens = TaggerEnsemble([a, b, Pieces(types, {"paris": "LOC"})])
    assert ens.encoder_name == "fake"
    spans = [(d["start"], d["end"], d["label"]) for d in ens.predict_spans(["Ann Lee flew to Paris."])[0]]
    assert spans == [(0, 7, "PER"), (16, 21, "LOC")]


def test_a_tagger_ensemble_refuses_members_it_cannot_average():
    from adaptloop.train.ensemble import TaggerEnsemble
    from adaptloop.train.fake import FakeTagger

    a = FakeTagger(("PER",), {"ann": "PER"})
    with pytest.raises(ValueError, match="at least two"):
        TaggerEnsemble([a])
    with pytest.raises(ValueError, match="entity types"):
        TaggerEnsemble([a, FakeTagger(("LOC", "PER"), {})])


def test_a_selected_tagger_ensemble_scores_dev_from_the_probabilities_its_selection_read(tmp_path):
    """Each candidate reads dev once: the fitted ensemble knows its mean probabilities there, so the node's dev
    score runs no member again (new text still does); a speed measured afterwards starts from nothing."""
    from adaptloop.agent.executor import model_speed
    from adaptloop.train.ensemble import TaggerEnsemble
    from adaptloop.train.fake import FakeTagger

    types = ("LOC", "PER")
    calls: list[int] = []

    class Counted(FakeTagger):
        def token_probs(self, texts, batch_size=32):
            calls.append(len(texts))
            return super().token_probs(texts, batch_size)

    dev = [Example("Ann went to Paris.", "", spans=((0, 3, "PER"), (12, 17, "LOC")))]
    paths = []
    for i, gaz in enumerate([{"went": "LOC"}, {"ann": "PER", "paris": "LOC"}, {"ann": "PER"}]):
        FakeTagger(types, gaz).save(tmp_path / f"m{i}")
        paths.append(str(tmp_path / f"m{i}"))
    spec = TaskSpec("t", "p", "extraction", types, primary_metric="f1")
    def load(path):
        return Counted(types, json.loads((path / "adaptloop_model.json").read_text())["gazetteer"])

    trainer = EnsembleTrainer(load=load)
    model, _ = trainer.fit(spec, Pipeline("raw", "ensemble", hparams={"members": paths}), [], dev, FitContext())
    assert calls == [1, 1, 1]  # the selection: each candidate once on dev
    kept = model.predict_spans([dev[0].text])
    assert calls == [1, 1, 1]  # dev again: from what the fit kept
    model.predict_spans(["Paris"])
    assert calls == [1, 1, 1] + [1] * len(model.members)
    model_speed(model, [dev[0].text])
    assert model.known_probs == {}
    assert TaggerEnsemble(model.members).predict_spans([dev[0].text]) == kept  # the same spans, computed again


def test_a_classifier_ensemble_scores_dev_from_the_probabilities_its_weights_were_picked_on(tmp_path):
    """Each member reads dev once, for the weights; the node's dev score reads the kept members' mix from the
    fit (new text runs each member); a speed measured afterwards starts from nothing; the same probabilities as
    an ensemble computed afresh."""
    from adaptloop.agent.executor import model_speed
    from adaptloop.train.ensemble import EnsembleModel

    spec = TaskSpec("t", "p", "classification", ("pay", "card"))
    train = [Example("pay bill now", "pay"), Example("card lost", "card"),
             Example("pay rent", "pay"), Example("card stolen", "card")]
    dev = [Example("pay the bill", "pay"), Example("my card", "card"), Example("lost it", "card")]
    calls: list[int] = []

    class Counted(FakeModel):
        def predict_proba(self, texts):
            calls.append(len(texts))
            return super().predict_proba(texts)

    good, _ = FakeTrainer().fit(spec, Pipeline("raw", "frozen"), train, dev, FitContext())
    paths = []
    for i, c in enumerate([good.centroids, good.centroids[::-1] * 0.3]):
        FakeModel(spec.labels, c).save(tmp_path / f"m{i}")
        paths.append(str(tmp_path / f"m{i}"))

    def load(path):
        return Counted(spec.labels, np.asarray(json.loads((path / "adaptloop_model.json").read_text())["centroids"]))

    pipe = Pipeline("raw", "ensemble", hparams={"members": paths})
    model, _ = EnsembleTrainer(load=load).fit(spec, pipe, train, dev, FitContext())
    texts = [e.text for e in dev]
    assert calls == [3, 3]  # the weights: each member once on dev
    kept = model.predict_proba(texts)
    assert calls == [3, 3]  # dev again: from what the fit kept
    model.predict_proba(["pay now", texts[0]])
    assert calls == [3, 3] + [1] * len(model.members)  # only the new text runs
    model_speed(model, texts)
    assert model.known_probs == {}
    np.testing.assert_allclose(EnsembleModel(model.members, model.weights).predict_proba(texts), kept)
    assert model.predict_proba([]).shape == (0, 2)
