"""Backend (a): frozen sentence-encoder embeddings + logistic-regression head.

The cheapest strong baseline: one embedding pass, then seconds of fitting. Its
out-of-fold probabilities also feed label-issue detection.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

from adaptloop.train.base import FitContext, class_weights, label_ids
from adaptloop.train.classifier import EncoderClassifier
from adaptloop.train.encoder import EmbeddingCache
from adaptloop.train.logreg import fit_logreg, full_head
from adaptloop.types import Example, NodeResult, Pipeline, TaskSpec

C_GRID = (3.0, 10.0, 30.0)  # inverse L2 strength; rows are unit-norm so C must be large


def _embeddings(ctx: FitContext, encoder: str, texts: Sequence[str], what: str) -> np.ndarray:
    cache = ctx.embeddings if isinstance(ctx.embeddings, EmbeddingCache) else EmbeddingCache()
    import torch

    return cache.get(encoder, list(texts), progress=ctx.progress(f"embed {what}", len(texts)),
                     device=torch.device(ctx.device))


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
        if isinstance(ctx.embeddings, EmbeddingCache):
            model.embeddings = ctx.embeddings  # scoring it reuses the vectors its fit embedded
        return model, NodeResult(dev_metrics={"accuracy": best[0]},
                                 train_seconds=time.monotonic() - t0, curve=curve,
                                 notes=f"C={best[1]}", chosen={"C": best[1]})


