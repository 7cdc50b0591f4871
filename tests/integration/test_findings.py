"""Diagnosis findings on real cases: a frozen MiniLM + logistic-regression head is trained on banking77
intents with a planted defect (swapped labels, a starved class, a biased head, truncated inputs) and the
diagnosis must name that defect, and not name it without; and the typo / unknown-word slice on real texts.
(The pure cases: tests/unit/diagnose/test_findings.py.)"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from adaptloop.diagnose.findings import (
    Diagnosis,
    class_errors,
    confusable_pairs,
    diagnose,
    label_noise,
    slices,
    training_vocabulary,
)
from adaptloop.types import Example

pytestmark = pytest.mark.integration

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


# ---------------------------------------------------------------- pure detectors on real texts


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


def test_swapped_labels_make_the_top_confusable_pair(bench):
    clean = confusable_pairs(bench.rows(bench.clean))
    assert clean and clean[0].target["labels"] != sorted(PLANTED)  # the real pair leads without the swap
    found = confusable_pairs(bench.rows(bench.fit(y=flipped(bench))))
    assert found[0].target["labels"] == sorted(PLANTED)
    assert found[0].evidence["a_as_b"] >= 2 and found[0].evidence["b_as_a"] >= 2
    assert found[0].suggests[0] == "contrastive"


def test_swapped_labels_are_the_top_label_noise(bench):
    clean = label_noise(issues_of(bench, bench.y(bench.train)), n_train=len(bench.train), n_classes=len(INTENTS))
    assert all(f.target["labels"] != sorted(PLANTED) for f in clean)
    found = label_noise(issues_of(bench, flipped(bench)), n_train=len(bench.train), n_classes=len(INTENTS))
    assert found[0].target["labels"] == sorted(PLANTED)
    assert found[0].evidence["count"] >= 10
    assert found[0].severity > 2 * max((f.severity for f in found[1:]), default=0.0)


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


def test_biased_head_over_predicts_its_class(bench):
    assert diagnose(bench.rows(bench.clean), bench.labels).top("over_prediction") is None
    d = diagnose(bench.rows(bench.fit(age_limit=8.0)), bench.labels)
    top = d.top("over_prediction")
    assert top is not None and top.target == {"label": "age_limit"}
    assert top.suggests == ("threshold", "contrastive") and top.severity > 0.5
    assert d.top("over_prediction") is d.top()


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
