"""What the trusted training data says about a trace, independent of any feedback: a reference
model fitted on it alone, nearest neighbours in embedding space, and how far a trace lies from
all of it. Pure functions over embeddings; triage (``diagnose.triage``, ``diagnose.span_triage``)
reads them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from adaptloop.train.logreg import fit_logreg

KNN = 10  # nearest training examples consulted (fewer for a small training set: see knn_size)
KNN_AGREE = 0.8  # they contradict a feedback label when this share agree on another and none has it
DRIFT_QUANTILE = 0.01  # farther from the training data than this share of training examples are
# A feedback label is noise when a logistic regression on the training data alone finds it this many
# nats less likely than its top class (log(p(top) / p(label)) >= 2.5: over 12x). Measured with
# benchmarks/triage_recall.py (AdaptFT banking77 / clinc150 / snips, MiniLM, 3 stages of 500 logs),
# with the pair rule below: min poison precision over the 9 stages 0.87 / 0.92 / 0.92 / 0.92 at
# 2.25 / 2.5 / 2.75 / 3.0, min recall 0.96 / 0.96 / 0.94 / 0.93 (at 2.5 per scenario, precision /
# recall >= 0.92 / 0.99 banking77, 0.95 / 0.97 clinc150, 0.95 / 0.96 snips). It replaced cleanlab's
# confident learning on out-of-fold probabilities over training data + traces (min precision 0.76,
# min recall 0.85: flipped traces vouch for each other across folds) and the kNN contradiction
# rule (keeping it: min precision 0.92 -> 0.87, no recall gained)
REFERENCE_ODDS = 2.5
# ... and when at least PAIR_MIN traces of one batch put the same (reference's class, feedback label)
# pair at log-odds PAIR_ODDS or more: a systematic class -> class relabelling the reference is too
# unsure about to refute one by one (snips RateBook -> AddToPlaylist at p ~ 0.1-0.2). Measured:
# snips min recall 0.86 without it, 0.96 with it; PAIR_MIN 3 / 5 / 8 and PAIR_ODDS 0.5 / 1.0 / 1.5
# all keep min recall at 0.96-0.97; min precision 0.92 but 0.91 at PAIR_MIN 3, 0.88 at PAIR_ODDS 0.5
PAIR_ODDS = 1.5
PAIR_MIN = 5


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (an all-zero row stays zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def nearest(a: np.ndarray, b: np.ndarray, *, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``a``: the index of and cosine to its nearest row of ``b``."""
    a, b = unit_rows(a), unit_rows(b)
    idx, sim = np.zeros(len(a), dtype=int), np.zeros(len(a))
    for s in range(0, len(a), chunk):
        m = a[s:s + chunk] @ b.T
        idx[s:s + chunk] = m.argmax(1)
        sim[s:s + chunk] = m.max(1)
    return idx, sim


def drift_threshold(train_x: np.ndarray) -> float:
    """The cosine below which a point is farther from the training data than ~all training
    points are from each other (leave-one-out nearest neighbour, ``DRIFT_QUANTILE``)."""
    x = unit_rows(train_x)
    sims = []
    for s in range(0, len(x), 2048):
        m = x[s:s + 2048] @ x.T
        for i in range(len(m)):
            m[i, s + i] = -1.0
        sims.append(m.max(1))
    return float(np.quantile(np.concatenate(sims), DRIFT_QUANTILE)) if sims else -1.0


def reference_model(train_labels: Sequence[str], train_x: np.ndarray, labels: Sequence[str], *,
                    seed: int = 0) -> Callable[[np.ndarray], np.ndarray] | None:
    """A logistic regression on the trusted training data alone: embeddings → probabilities over
    ``labels`` (1e-12 for a label without training examples); None with fewer than two classes."""
    index = {lab: i for i, lab in enumerate(labels)}
    keep = [j for j, lab in enumerate(train_labels) if lab in index]
    ys = np.array([index[train_labels[j]] for j in keep])
    if len(set(ys.tolist())) < 2:
        return None
    clf = fit_logreg(train_x[keep], ys, c=10.0, seed=seed)

    def probs(x: np.ndarray) -> np.ndarray:
        out = np.full((len(x), len(labels)), 1e-12)
        if len(x):
            out[:, clf.classes_] = clf.predict_proba(x)
        return out

    return probs


def reference_odds(views: Sequence[Any], x: np.ndarray, train_labels: Sequence[str], train_x: np.ndarray,
                   labels: Sequence[str], *, seed: int = 0,
                   ref: Callable[[np.ndarray], np.ndarray] | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """How strongly a model of the trusted training data alone disagrees with each feedback label.

    Logistic regression on the training data only (the traces' own labels never vote, so many
    texts of one class flipped to another cannot vouch for each other); returns every view's
    log-odds ``log(p(top class) / p(feedback label))`` (0 when the reference agrees), the
    probability of its feedback label (both NaN without a feedback label, or for a label with no
    training example to compare with) and the reference's top class (None where NaN). ``ref``: the
    ``reference_model`` of these training data, when the caller has already fitted it.
    """
    index = {lab: i for i, lab in enumerate(labels)}
    odds, conf = np.full(len(views), np.nan), np.full(len(views), np.nan)
    top: list[str | None] = [None] * len(views)
    ys = {index[lab] for lab in train_labels if lab in index}
    have = [i for i, v in enumerate(views) if v.feedback_label in index and index[v.feedback_label] in ys]
    ref = ref or reference_model(train_labels, train_x, labels, seed=seed)
    if not have or ref is None:
        return odds, conf, top
    probs = ref(x[have])
    given = probs[np.arange(len(have)), [index[views[i].feedback_label] for i in have]]
    odds[have] = np.log(probs.max(1) / np.maximum(given, 1e-12))
    conf[have] = given
    for j, i in enumerate(have):
        top[i] = labels[int(probs[j].argmax())]
    return odds, conf, top


def knn_size(train_labels: Sequence[str]) -> int:
    """Neighbours consulted: ``KNN``, but no more than about half the smallest class (plus one),
    so that a prototypical example of a class with 8 training rows can still be outvoted by it
    (measured when the neighbours also judged feedback labels: recall of wrong feedback on snips
    seed sets 0.89 with 10 neighbours, 0.96 with 5; now they only raise the disagreement signal)."""
    counts = Counter(train_labels)
    return min(KNN, max(3, min(counts.values()) // 2 + 1)) if counts else KNN


def knn_labels(x: np.ndarray, train_x: np.ndarray, train_labels: Sequence[str],
                k: int = KNN) -> list[Counter]:
    """Label counts among the k nearest training examples of each row (empty without training data)."""
    if not len(train_x):
        return [Counter() for _ in range(len(x))]
    a, b = unit_rows(x), unit_rows(train_x)
    out: list[Counter] = []
    for s in range(0, len(a), 2048):
        top = np.argsort(-(a[s:s + 2048] @ b.T), axis=1)[:, :k]
        out.extend(Counter(train_labels[j] for j in row) for row in top)
    return out


def knn_conflict(votes: Counter, label: str) -> str | None:
    """The label the nearest training examples agree on when the feedback label is absent among them."""
    if not votes or label in votes:
        return None
    top, n = votes.most_common(1)[0]
    return top if n >= KNN_AGREE * sum(votes.values()) else None
