"""Backend (a): frozen sentence-encoder embeddings + logistic-regression head.

The cheapest strong baseline: one embedding pass, then seconds of fitting. Its
out-of-fold probabilities also feed label-issue detection.

On a larger encoder the embedding pass is most of a trial (frozen mpnet-base: 400 s for 13,000 texts on
two cores), so it is anytime: dev is embedded first, then train in ``SLICES`` stratified slices; once
the next slice would end past the trial's checkpoint, a head fitted on the slices embedded so far is
scored on dev after each slice (its learning curve over data), and a fit still below the incumbent
stops there, as a fine-tune's does at a dev check. The deadline stops it the same way, a slice early
rather than late. Either way the head fits what was embedded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

from adaptloop.train.base import FitContext, class_weights, label_ids
from adaptloop.train.classifier import EncoderClassifier
from adaptloop.train.encoder import EmbeddingCache
from adaptloop.train.logreg import fit_logreg, full_head
from adaptloop.types import Example, NodeResult, Pipeline, TaskSpec

C_GRID = (3.0, 10.0, 30.0)  # inverse L2 strength; rows are unit-norm so C must be large


SLICES = 8  # train is embedded in this many slices; the trailing rule is asked after each one past the checkpoint
CHECK_C = 10.0  # the head a check past the checkpoint fits (one C, not the grid: the check must be cheap)


def _embeddings(ctx: FitContext, encoder: str, texts: Sequence[str], what: str,
                progress: Callable[[int], None] | None = None) -> np.ndarray:
    """``texts`` embedded through the run's cache; ``progress``: a bar of a larger whole (else one for ``what``)."""
    cache = ctx.embeddings if isinstance(ctx.embeddings, EmbeddingCache) else EmbeddingCache()
    import torch

    return cache.get(encoder, list(texts), progress=progress or ctx.progress(f"embed {what}", len(texts)),
                     device=torch.device(ctx.device))


def stratified_order(y: np.ndarray, seed: int) -> np.ndarray:
    """Indices of ``y`` in a seeded order whose every prefix holds each class in proportion to its count
    (an example's place is its rank within its class over the class's size)."""
    rng = np.random.default_rng(seed)
    place = np.empty(len(y), dtype=np.float64)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        place[idx] = (np.arange(len(idx)) + rng.random()) / len(idx)
    return np.argsort(place, kind="stable")


def new_bests(report: Callable[[float], None]) -> Callable[[float], None]:
    """``report`` told only the scores above every one told before (``FitContext.report``'s contract)."""
    top = -math.inf

    def tell(score: float) -> None:
        nonlocal top
        if score > top:
            top = score
            report(score)
    return tell


class FrozenEncoderTrainer:
    """Fits a logistic-regression head on frozen embeddings; picks C on dev."""

    def fit(self, spec: TaskSpec, pipeline: Pipeline, train: Sequence[Example],
            dev: Sequence[Example], ctx: FitContext) -> tuple[EncoderClassifier, NodeResult]:
        t0 = time.monotonic()
        x_dev = _embeddings(ctx, pipeline.encoder, [e.text for e in dev], "dev")
        y_tr, y_dev = label_ids(train, spec.labels), label_ids(dev, spec.labels)
        cw = class_weights(pipeline.hparams.get("class_weight"), spec.labels)
        report = new_bests(ctx.report)
        x_tr, y_tr, stop = self._embed_train(ctx, pipeline, train, y_tr, (x_dev, y_dev), cw, report)
        grid = [pipeline.hparams["C"]] if "C" in pipeline.hparams else list(C_GRID)
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
        report(best[0])
        share = len(y_tr) / max(1, len(train))
        return model, NodeResult(dev_metrics={"accuracy": best[0]},
                                 train_seconds=time.monotonic() - t0, curve=curve,
                                 notes=f"C={best[1]}" + (f"; {stop}" if stop else ""),
                                 chosen={"C": best[1], **({"train_share": round(share, 4)} if stop else {}),
                                         **({"trailing": True} if stop.startswith("trailing") else {})})

    @staticmethod
    def _embed_train(ctx: FitContext, pipeline: Pipeline, train: Sequence[Example], y: np.ndarray,
                     dev: tuple[np.ndarray, np.ndarray], cw: dict[int, float] | str | None,
                     report: Callable[[float], None]) -> tuple[np.ndarray, np.ndarray, str]:
        """Train's embeddings and labels, slice by slice, and why embedding stopped early ("" if it did not)."""
        order = stratified_order(y, pipeline.seed)
        slices = np.array_split(order, min(SLICES, max(1, len(order))))
        bar = ctx.progress("embed train", len(train))
        parts: list[np.ndarray] = []
        stop = ""
        for i, idx in enumerate(slices):
            t = time.monotonic()
            parts.append(_embeddings(ctx, pipeline.encoder, [train[j].text for j in idx], "train", bar))
            if i == len(slices) - 1:
                break
            seen = np.concatenate(slices[:i + 1])
            ahead = time.monotonic() - t  # the next slice takes about as long: check before it would cross
            if ctx.seconds_left() <= ahead:
                stop = f"deadline reached: fitted on the {len(seen) / len(y):.0%} of train embedded"
            elif time.monotonic() + ahead >= ctx.checkpoint and len(dev[1]):
                clf = fit_logreg(np.concatenate(parts), y[seen], c=CHECK_C, seed=pipeline.seed, class_weight=cw)
                score = float((clf.predict(dev[0]) == dev[1]).mean())
                report(score)
                incumbent = ctx.incumbent()
                if score < incumbent:
                    stop = (f"trailing: dev {score:.4f} on {len(seen) / len(y):.0%} of train below {incumbent:.4f}, "
                            "the run's best (finished or running beside it), past this trial's share of the budget")
            if stop:
                break
        return np.concatenate(parts), y[np.concatenate(slices[:len(parts)])], stop


