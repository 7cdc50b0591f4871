"""Diagnosis findings: pure unit cases, and real cases where a frozen MiniLM + logistic-regression
head is trained on banking77 intents with a planted defect (swapped labels, a starved class, a
biased head, truncated inputs) and the diagnosis must name that defect, and not name it without."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from adaptloop.diagnose.findings import (
    Diagnosis,
    Finding,
    class_errors,
    confusable_pairs,
    diagnose,
    fit_gap,
    label_noise,
    per_class,
    slices,
    training_vocabulary,
)
from adaptloop.types import Example

ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
# Ten intents, one naturally confusable pair among them (card_arrival / card_delivery_estimate),
# so that a planted pair must beat a real one.
INTENTS = ("age_limit", "atm_support", "card_arrival", "card_delivery_estimate", "change_pin", "exchange_rate",
           "lost_or_stolen_card", "pending_top_up", "terminate_account", "transfer_timing")
PLANTED = ("exchange_rate", "terminate_account")  # not confused by the clean model
N_TRAIN, N_DEV = 60, 20  # per intent: train is the first 60 rows of each, dev the next 20
FLIP = 0.4  # share of each planted intent's train rows relabelled as the other
STARVED = "card_arrival"  # keeps 3 train rows in the under-sampling case


def split(banking_train: list[dict]) -> tuple[list[Example], list[Example]]:
    """Train: the first N_TRAIN rows of each intent; dev: the next N_DEV."""
    seen: Counter = Counter()
    train, dev = [], []
    for r in banking_train:
        if r["label"] in INTENTS:
            seen[r["label"]] += 1
            if seen[r["label"]] <= N_TRAIN + N_DEV:
                (train if seen[r["label"]] <= N_TRAIN else dev).append(Example(r["text"], r["label"]))
    return train, dev


def row(i: int, label: str, pred: str, text: str = "some words here", confidence: float = 0.9) -> dict:
    return {"id": f"r{i}", "text": text, "label": label, "pred": pred, "confidence": confidence}


def rows_from(pairs: Sequence[tuple[str, str]]) -> list[dict]:
    return [row(i, gold, pred) for i, (gold, pred) in enumerate(pairs)]


# ---------------------------------------------------------------- pure: objects and per-class numbers


def test_finding_rejects_unknown_kind_intervention_and_severity():
    with pytest.raises(ValueError, match="kind"):
        Finding("confusion", "s", 0.5)
    with pytest.raises(ValueError, match="interventions"):
        Finding("overfit", "s", 0.5, suggests=("early-stop",))
    with pytest.raises(ValueError, match="severity"):
        Finding("overfit", "s", 1.5)


def test_diagnosis_sorts_and_selects():
    low = Finding("slice", "low", 0.1, {"slice": "short"})
    high = Finding("overfit", "high", 0.8)
    mid = Finding("slice", "mid", 0.4, {"slice": "long"})
    d = Diagnosis((low, high, mid), n=10, errors=3)
    assert d.findings == (high, mid, low)
    assert d.top() is high and d.top("slice") is mid and d.top("label_noise") is None
    assert d.of_kind("slice") == [mid, low]


def test_round_trip_through_json_keeps_every_field():
    rows = rows_from([("a", "b")] * 3 + [("b", "a")] * 2 + [("a", "a")] * 5)
    issues = [{"id": "t1", "label": "a", "suggested": "b"}, {"id": "t2", "label": "b", "suggested": "a"}]
    d = diagnose(rows, ["a", "b"], curve=[{"C": 10.0, "dev_accuracy": 0.5, "train_accuracy": 1.0}],
                 label_issues=issues, n_train=40)
    assert {f.kind for f in d.findings} >= {"confusable_pair", "overfit", "label_noise"}
    again = Diagnosis.from_dict(json.loads(json.dumps(d.to_dict())))
    assert again == d
    assert all(isinstance(f.suggests, tuple) for f in again.findings)


def test_per_class_counts():
    rows = rows_from([("a", "a"), ("a", "b"), ("b", "b"), ("b", "b"), ("c", "b")])
    stats = per_class(rows, ["a", "b", "c"])
    assert stats["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2, "predicted": 1}
    assert stats["b"]["precision"] == 0.5 and stats["b"]["recall"] == 1.0 and stats["b"]["predicted"] == 4
    assert stats["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0}


def test_module_imports_no_heavy_library():
    code = ("import sys, adaptloop.diagnose.findings; "
            "print(sorted(m for m in ('torch', 'numpy', 'cleanlab', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- pure: thresholds


def test_pairs_are_unordered_ranked_and_need_min_errors():
    rows = rows_from([("a", "b")] * 2 + [("b", "a")] * 2 + [("c", "d")] * 3 + [("e", "f")] + [("a", "a")] * 12)
    found = confusable_pairs(rows)
    assert [f.target["labels"] for f in found] == [["a", "b"], ["c", "d"]]  # e/f: one error is not a pair
    assert found[0].severity == pytest.approx(4 / 8)
    assert found[0].evidence["a_as_b"] == 2 and found[0].evidence["b_as_a"] == 2
    assert confusable_pairs(rows, top=1) == found[:1]


def test_evidence_keeps_the_ten_most_confident_mistakes():
    rows = [row(i, "a", "b", confidence=i / 20) for i in range(15)]
    [f] = confusable_pairs(rows)
    assert f.evidence["example_ids"] == [f"r{i}" for i in range(14, 4, -1)]


def test_class_errors_ignore_one_or_two_stray_predictions():
    # "x" never occurs but is predicted twice: a skew, but too small to be a finding
    rows = rows_from([("a", "x")] * 2 + [("a", "a")] * 10 + [("b", "b")] * 10)
    assert class_errors(rows, ["a", "b", "x"]) == []
    # "b" is predicted 14 times for 10 occurrences: 4 extra, but under 1.5x, so a big class is not flagged
    assert class_errors(rows_from([("b", "b")] * 10 + [("a", "b")] * 4 + [("a", "a")] * 20), ["a", "b"]) == []
    rows = rows_from([("a", "x")] * 4 + [("a", "a")] * 8 + [("b", "b")] * 10)
    assert [(f.kind, f.target) for f in class_errors(rows, ["a", "b", "x"])] == [
        ("over_prediction", {"label": "x"}), ("under_prediction", {"label": "a"})]


def test_label_noise_groups_unordered_pairs():
    issues = ([{"id": f"a{i}", "label": "a", "suggested": "b"} for i in range(5)]
              + [{"id": f"b{i}", "label": "b", "suggested": "a"} for i in range(3)]
              + [{"id": "c0", "label": "c", "suggested": "a"}])
    found = label_noise(issues, n_train=100, n_classes=10)
    assert [f.target for f in found] == [{"labels": ["a", "b"]}]  # a single c/a flag is not a pair
    assert found[0].evidence["count"] == 8 and found[0].evidence["a_as_b"] == 5
    assert found[0].severity == pytest.approx(8 / 20)  # of the pair's expected 2 * 100 / 10 examples
    assert found[0].suggests == ("clean",)
    assert label_noise([], n_train=100) == []


# ---------------------------------------------------------------- pure: fit_gap on constructed curves


def steps(devs: Sequence[float], **extra) -> list[dict]:
    return [{"step": 10 * i, "epoch": i / 4, "dev_accuracy": d, "train_loss": 2.0 / (i + 1), **extra}
            for i, d in enumerate(devs)]


def test_fit_gap_overfit_when_dev_peaks_then_falls():
    curve = steps([0.40, 0.80, 0.90, 0.86, 0.84])
    [f] = fit_gap(curve, dev_accuracy=0.90)
    assert f.kind == "overfit" and f.suggests == ("fewer-epochs", "lower-lr")
    assert f.severity == pytest.approx(0.06) and f.evidence["peak"] == {"step": 20, "dev_accuracy": 0.90}


def test_fit_gap_overfit_from_train_dev_gap_on_a_c_grid():
    grid = [{"C": 3.0, "dev_accuracy": 0.70, "train_accuracy": 0.90},
            {"C": 10.0, "dev_accuracy": 0.72, "train_accuracy": 1.00},
            {"C": 30.0, "dev_accuracy": 0.71, "train_accuracy": 1.00}]
    [f] = fit_gap(grid, dev_accuracy=0.72)
    assert f.kind == "overfit" and f.severity == pytest.approx(0.28)  # train accuracy of the best-dev C
    # an explicit train accuracy overrides the curve's
    assert [f.kind for f in fit_gap(grid, dev_accuracy=0.72, train_accuracy=0.80)] == ["underfit"]


def test_fit_gap_underfit_when_still_rising_or_train_low():
    [f] = fit_gap(steps([0.30, 0.50, 0.62, 0.71]), dev_accuracy=0.71)
    assert f.kind == "underfit" and f.suggests == ("more-epochs", "finetune", "larger-encoder")
    assert f.severity == pytest.approx(0.09)
    [f] = fit_gap(steps([0.55, 0.60, 0.60, 0.60], train_accuracy=0.65), dev_accuracy=0.60)
    assert f.kind == "underfit" and f.severity == pytest.approx(0.35)


def test_fit_gap_silent_on_healthy_empty_or_short_curves():
    healthy = steps([0.50, 0.85, 0.90, 0.905, 0.90, 0.905], train_accuracy=0.97)
    assert fit_gap(healthy, dev_accuracy=0.905) == []
    assert fit_gap([], dev_accuracy=0.9) == []
    assert fit_gap(steps([0.3, 0.9]), dev_accuracy=0.9) == []  # two points: no shape yet
    assert diagnose(rows_from([("a", "a")] * 5), ["a"]).findings == ()  # no curve: fit_gap is skipped


# ---------------------------------------------------------------- pure detectors on real texts


def test_slice_needs_a_higher_error_rate_than_overall():
    short, full = "card not working", "my card was declined at the shop this morning"
    even = [row(i, "a", "b" if i % 4 == 0 else "a", short if i < 20 else full) for i in range(60)]
    assert slices(even) == []  # short inputs err as often as the rest (1 in 4)
    worse = [row(i, "a", "b" if (i < 20 and i % 2 == 0) or i % 8 == 0 else "a", short if i < 20 else full)
             for i in range(60)]
    [f] = slices(worse)
    assert f.target == {"slice": "short"} and f.evidence["size"] == 20 and f.evidence["errors"] == 10


def test_typos_and_unknown_words_suggest_different_fixes(banking_train):
    train, dev = split(banking_train)
    vocab = training_vocabulary(e.text for e in train)
    texts = [e.text for e in dev[::2]]  # 100 dev texts, every intent
    # the 20 wrong rows carry a typo of a known word, or two invented words the encoder never saw
    typo = [t + " pleaes" for t in texts[:20]]
    jargon = [t + " blorptastic zzyzx" for t in texts[:20]]
    assert "please" in vocab and "pleaes" not in vocab

    def scored(wrong: list[str]) -> list[dict]:
        return [row(i, "a", "b" if i < len(wrong) else "a", t) for i, t in enumerate(wrong + texts[20:])]

    for wrong, fix in ((typo, ("augment",)), (jargon, ("larger-encoder", "augment"))):
        found = {f.target["slice"]: f for f in slices(scored(wrong), vocabulary=vocab)}
        assert found["typos_or_oov"].suggests == fix
        assert found["typos_or_oov"].severity == 1.0
    assert "typos_or_oov" not in {f.target["slice"] for f in slices(scored(typo))}  # no vocabulary: skipped


# ---------------------------------------------------------------- real model: frozen MiniLM + LR head


def one_blas_thread():
    """Logistic regression on 600 rows runs in milliseconds on one BLAS thread, but takes seconds
    when BLAS threads fight other processes for two cores."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


@dataclass
class CachedHead:
    """A logistic-regression head over cached MiniLM embeddings; ``bias`` shifts one class's logit."""

    labels: tuple[str, ...]
    clf: object
    cache: object
    bias: dict[str, float] | None = None

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        x = self.cache.get(ENCODER, list(texts), device=torch.device("cpu"))
        logits = self.clf.decision_function(x)
        for label, shift in (self.bias or {}).items():
            logits[:, self.labels.index(label)] += shift
        p = np.exp(logits - logits.max(1, keepdims=True))
        return p / p.sum(1, keepdims=True)

    def save(self, folder) -> None:  # the TrainedModel protocol; never called here
        raise NotImplementedError


@dataclass
class Bench:
    labels: tuple[str, ...]
    train: list[Example]
    dev: list[Example]
    x_train: np.ndarray
    cache: object

    def y(self, examples: Sequence[Example]) -> np.ndarray:
        return np.array([self.labels.index(e.label) for e in examples])

    def fit(self, keep: Sequence[int] | None = None, y: np.ndarray | None = None, **bias: float) -> CachedHead:
        from adaptloop.train.logreg import fit_logreg

        y = self.y(self.train) if y is None else y
        idx = np.arange(len(self.train)) if keep is None else np.asarray(keep)
        with one_blas_thread():
            clf = fit_logreg(self.x_train[idx], y[idx], c=10.0, seed=0)
        return CachedHead(self.labels, clf, self.cache, bias)

    @functools.cached_property
    def clean(self) -> CachedHead:
        """The model trained on the untouched train split (fitted once per module)."""
        return self.fit()

    def rows(self, model: CachedHead, dev: Sequence[Example] | None = None) -> list[dict]:
        from adaptloop.agent.predict import score_rows

        return score_rows(model, self.dev if dev is None else dev)


@pytest.fixture(scope="module")
def bench(banking_train) -> Bench:
    import torch

    from adaptloop.train.encoder import EmbeddingCache

    train, dev = split(banking_train)
    assert len(train) == N_TRAIN * len(INTENTS) and len(dev) == N_DEV * len(INTENTS)
    cache = EmbeddingCache()
    texts = [e.text for e in train + dev] + [e.text for e in truncated(dev)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on two shared cores one thread embeds ~2.5x faster than two fighting
    try:
        x = cache.get(ENCODER, texts, device=torch.device("cpu"))  # the only encoder pass
    finally:
        torch.set_num_threads(threads)
    return Bench(tuple(sorted(INTENTS)), train, dev, x[: len(train)], cache)


def truncated(dev: Sequence[Example]) -> list[Example]:
    """Every fifth dev text cut to its first one or two words."""
    return [Example(" ".join(e.text.split()[: 1 + i % 2]), e.label) if i % 5 == 0 else e for i, e in enumerate(dev)]


def flipped(bench: Bench) -> np.ndarray:
    """Train labels with FLIP of each planted intent's rows relabelled as the other intent."""
    y = bench.y(bench.train)
    a, b = (bench.labels.index(label) for label in PLANTED)
    ia, ib = np.flatnonzero(y == a), np.flatnonzero(y == b)
    k = int(FLIP * len(ia))
    y[ia[:k]], y[ib[:k]] = b, a
    return y


def issues_of(bench: Bench, y: np.ndarray) -> list[dict]:
    """cleanlab's label issues on out-of-fold probabilities, with the label each one suggests."""
    from adaptloop.data.curate import find_label_issues
    from adaptloop.train.logreg import out_of_fold_proba

    with one_blas_thread():
        probs = out_of_fold_proba(bench.x_train, y, len(bench.labels), seed=0)
    drops = find_label_issues(y, probs, max_fraction=0.15)
    return [{"id": bench.train[d.index].id, "label": bench.labels[y[d.index]],
             "suggested": bench.labels[int(probs[d.index].argmax())]} for d in drops]


@pytest.mark.integration
def test_swapped_labels_make_the_top_confusable_pair(bench):
    clean = confusable_pairs(bench.rows(bench.clean))
    assert clean and clean[0].target["labels"] != sorted(PLANTED)  # the real pair leads without the swap
    found = confusable_pairs(bench.rows(bench.fit(y=flipped(bench))))
    assert found[0].target["labels"] == sorted(PLANTED)
    assert found[0].evidence["a_as_b"] >= 2 and found[0].evidence["b_as_a"] >= 2
    assert found[0].suggests[0] == "contrastive"


@pytest.mark.integration
def test_swapped_labels_are_the_top_label_noise(bench):
    clean = label_noise(issues_of(bench, bench.y(bench.train)), n_train=len(bench.train), n_classes=len(INTENTS))
    assert all(f.target["labels"] != sorted(PLANTED) for f in clean)
    found = label_noise(issues_of(bench, flipped(bench)), n_train=len(bench.train), n_classes=len(INTENTS))
    assert found[0].target["labels"] == sorted(PLANTED)
    assert found[0].evidence["count"] >= 10
    assert found[0].severity > 2 * max((f.severity for f in found[1:]), default=0.0)


@pytest.mark.integration
def test_starved_class_is_under_predicted_and_its_neighbour_over_predicted(bench):
    assert class_errors(bench.rows(bench.clean), bench.labels) == []
    starved = [i for i, e in enumerate(bench.train) if e.label == STARVED]
    keep = sorted(set(range(len(bench.train))) - set(starved[3:]))
    found = class_errors(bench.rows(bench.fit(keep=keep)), bench.labels)
    under = [f for f in found if f.kind == "under_prediction"]
    assert under[0].target == {"label": STARVED} and under[0].suggests == ("reweight", "augment")
    assert under[0].evidence["lost_to"].get("card_delivery_estimate", 0) >= 5
    over = [f for f in found if f.kind == "over_prediction"]
    assert [f.target["label"] for f in over] == ["card_delivery_estimate"]


@pytest.mark.integration
def test_biased_head_over_predicts_its_class(bench):
    assert diagnose(bench.rows(bench.clean), bench.labels).top("over_prediction") is None
    d = diagnose(bench.rows(bench.fit(age_limit=8.0)), bench.labels)
    top = d.top("over_prediction")
    assert top is not None and top.target == {"label": "age_limit"}
    assert top.suggests == ("threshold", "contrastive") and top.severity > 0.5
    assert d.top("over_prediction") is d.top()


@pytest.mark.integration
def test_truncated_inputs_make_the_short_slice(bench):
    model = bench.clean
    vocab = training_vocabulary(e.text for e in bench.train)
    assert "short" not in {f.target["slice"] for f in slices(bench.rows(model), vocabulary=vocab)}
    d = diagnose(bench.rows(model, truncated(bench.dev)), bench.labels, vocabulary=vocab)
    top = d.top("slice")
    assert top is not None and top.target == {"slice": "short"} and top.suggests == ("augment",)
    assert top.evidence["size"] == len(bench.dev) // 5
    assert top.evidence["error_rate"] >= 3 * top.evidence["overall_error_rate"]
    assert Diagnosis.from_dict(json.loads(json.dumps(d.to_dict()))) == d
