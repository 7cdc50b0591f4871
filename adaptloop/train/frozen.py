"""Backend (a): frozen sentence-encoder embeddings + logistic-regression head.

The cheapest strong baseline: one embedding pass, then seconds of fitting. Its
out-of-fold probabilities also feed label-issue detection.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from adaptloop.train.base import FitContext, class_weights, label_ids
from adaptloop.train.classifier import EncoderClassifier
from adaptloop.train.encoder import EmbeddingCache
from adaptloop.types import Example, NodeResult, Pipeline, TaskSpec

C_GRID = (3.0, 10.0, 30.0)  # inverse L2 strength; rows are unit-norm so C must be large


def _embeddings(ctx: FitContext, encoder: str, texts: Sequence[str], what: str) -> np.ndarray:
    cache = ctx.embeddings if isinstance(ctx.embeddings, EmbeddingCache) else EmbeddingCache()
    import torch

    return cache.get(encoder, list(texts), progress=ctx.progress(f"embed {what}", len(texts)),
                     device=torch.device(ctx.device))


def fit_logreg(x: np.ndarray, y: np.ndarray, *, c: float, seed: int,
               class_weight: str | dict[int, float] | None = None) -> LogisticRegression:
    """Multinomial logistic regression; y must hold class ids 0..k-1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(C=c, max_iter=1000, random_state=seed,
                                  class_weight=class_weight).fit(x, y)


def full_head(clf: LogisticRegression, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Head (k, d) and bias (k,) with rows for every class id, also those absent in training."""
    d = clf.coef_.shape[1]
    weight = np.zeros((k, d), dtype=np.float32)
    bias = np.full(k, -1e4, dtype=np.float32)  # a class never seen is never predicted
    weight[clf.classes_] = clf.coef_
    bias[clf.classes_] = clf.intercept_
    return weight, bias


class FrozenEncoderTrainer:
    """Fits a logistic-regression head on frozen embeddings; picks C on dev."""

    def fit(self, spec: TaskSpec, pipeline: Pipeline, train: Sequence[Example],
            dev: Sequence[Example], ctx: FitContext) -> tuple[EncoderClassifier, NodeResult]:
        t0 = time.monotonic()
        x_tr = _embeddings(ctx, pipeline.encoder, [e.text for e in train], "train")
        x_dev = _embeddings(ctx, pipeline.encoder, [e.text for e in dev], "dev")
        y_tr, y_dev = label_ids(train, spec.labels), label_ids(dev, spec.labels)
        grid = [pipeline.hparams["C"]] if "C" in pipeline.hparams else list(C_GRID)
        cw = class_weights(pipeline.hparams.get("class_weight"), spec.labels)
        best: tuple[float, float, LogisticRegression] | None = None
        curve = []
        for c in grid:
            clf = fit_logreg(x_tr, y_tr, c=c, seed=pipeline.seed, class_weight=cw)
            acc = float((clf.predict(x_dev) == y_dev).mean()) if len(dev) else 0.0
            curve.append({"C": c, "dev_accuracy": acc,
                          "train_accuracy": float((clf.predict(x_tr) == y_tr).mean())})
            if best is None or acc > best[0]:
                best = (acc, c, clf)
        assert best is not None
        weight, bias = full_head(best[2], len(spec.labels))
        model = EncoderClassifier(spec.labels, pipeline.encoder, weight, bias)
        return model, NodeResult(dev_metrics={"accuracy": best[0]},
                                 train_seconds=time.monotonic() - t0, curve=curve,
                                 notes=f"C={best[1]}", chosen={"C": best[1]})


def out_of_fold_proba(x: np.ndarray, y: np.ndarray, k: int, *, folds: int = 5,
                      seed: int = 0, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Out-of-fold class probabilities, shape (n, k), from logistic regression on ``x``.

    Each row is predicted by a model that never saw it, as cleanlab requires.
    """
    counts = np.bincount(y, minlength=k)
    n_splits = int(max(2, min(folds, counts[counts > 0].min())))
    probs = np.full((len(y), k), 1e-6, dtype=np.float64)
    skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for tr, te in skf.split(x, y):
        clf = fit_logreg(x[tr], y[tr], c=10.0, seed=seed)
        probs[np.ix_(te, clf.classes_)] = clf.predict_proba(x[te])
        if progress:
            progress(1)
    return probs / probs.sum(1, keepdims=True)
