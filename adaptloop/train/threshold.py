"""Decision thresholds on top of any trained model: per-class bias and abstention.

A model that over-predicts a class gets a negative log-offset for it; a task with an
out-of-scope label abstains (predicts that label) when the top probability is below a
threshold. Both are tuned on dev by coordinate ascent. The dev score reported is
cross-fitted (tuned on one half, scored on the other, both ways), so the search does not
select a node on a number it tuned to; the saved model uses values tuned on all of dev.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from adaptloop.train.base import FitContext, TrainedModel, label_ids
from adaptloop.types import Example, NodeResult, Pipeline, TaskSpec

OFFSETS = (-2.0, -1.0, -0.5, 0.0, 0.5)  # log-probability shifts tried per targeted class
MAX_TARGETS = 10


class ThresholdModel:
    """``base`` with log-offsets per class and an optional abstention threshold."""

    def __init__(self, base: TrainedModel, offsets: Sequence[float], abstain: str | None = None,
                 threshold: float = 0.0) -> None:
        self.base = base
        self.labels = tuple(base.labels)
        self.offsets = np.asarray(offsets, dtype=np.float64)
        self.abstain = abstain
        self.threshold = float(threshold)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return adjust(self.base.predict_proba(texts), self.offsets,
                      self.labels.index(self.abstain) if self.abstain else None, self.threshold)

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        self.base.save(folder / "base")
        meta = {"kind": "threshold", "labels": list(self.labels), "offsets": self.offsets.tolist(),
                "abstain": self.abstain, "threshold": self.threshold}
        (folder / "adaptloop_model.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


def adjust(probs: np.ndarray, offsets: np.ndarray, abstain: int | None, threshold: float) -> np.ndarray:
    """Apply log-offsets, renormalise, then send low-confidence rows to ``abstain``."""
    logp = np.log(np.clip(probs, 1e-12, 1.0)) + offsets
    logp -= logp.max(1, keepdims=True)
    p = np.exp(logp)
    p /= p.sum(1, keepdims=True)
    if abstain is not None and threshold > 0:
        low = p.max(1) < threshold
        p[low] = 0.0
        p[low, abstain] = 1.0
    return p


def tune(probs: np.ndarray, y: np.ndarray, targets: Sequence[int], abstain: int | None,
         ) -> tuple[np.ndarray, float]:
    """Offsets for ``targets`` and an abstention threshold maximising accuracy on (probs, y)."""
    offsets = np.zeros(probs.shape[1])
    grid_t = [0.0]
    if abstain is not None:  # quantiles of the top probability and the midpoints between them
        q = np.unique(np.quantile(probs.max(1), np.linspace(0.01, 0.6, 30)))
        grid_t += sorted(set(q.tolist()) | set(((q[:-1] + q[1:]) / 2).tolist()))

    def acc(o: np.ndarray, t: float) -> float:
        return float((adjust(probs, o, abstain, t).argmax(1) == y).mean())

    best_t, best = 0.0, acc(offsets, 0.0)
    for _ in range(2):  # two sweeps of coordinate ascent
        for c in targets:
            for v in OFFSETS:
                o = offsets.copy()
                o[c] = v
                a = acc(o, best_t)
                if a > best + 1e-12:
                    offsets, best = o, a
        for t in grid_t:
            a = acc(offsets, t)
            if a > best + 1e-12:
                best_t, best = t, a
    return offsets, best_t


class ThresholdTrainer:
    """Tunes offsets/abstention of the model at ``hparams["of"]`` (a saved model folder).

    hparams: ``of`` (path), ``labels`` (classes to consider shifting; default: none),
    ``abstain`` (the out-of-scope label, or None).
    """

    def __init__(self, load: object | None = None) -> None:
        from adaptloop.train import load_trained

        self.load = load or load_trained

    def fit(self, spec: TaskSpec, pipeline: Pipeline, train: Sequence[Example],
            dev: Sequence[Example], ctx: FitContext) -> tuple[ThresholdModel, NodeResult]:
        t0 = time.monotonic()
        hp = pipeline.hparams
        if len(dev) < 20:
            raise ValueError("threshold tuning needs a dev split of at least 20 examples")
        base = self.load(Path(hp["of"]))  # type: ignore[operator]
        abstain = hp.get("abstain")
        if abstain is not None and abstain not in base.labels:
            raise ValueError(f"abstention label '{abstain}' is not one of the model's labels")
        a_idx = base.labels.index(abstain) if abstain else None
        targets = [base.labels.index(lab) for lab in hp.get("labels", []) if lab in base.labels][:MAX_TARGETS]
        bar = ctx.progress("threshold: score base on dev", 1)
        probs = base.predict_proba([e.text for e in dev])
        bar(1)
        y = label_ids(dev, spec.labels)
        rng = np.random.default_rng(pipeline.seed)
        half = np.zeros(len(y), dtype=bool)
        half[rng.permutation(len(y))[: len(y) // 2]] = True
        correct = 0
        for fold in (half, ~half):  # cross-fitted dev accuracy: tuned on one half, scored on the other
            o, t = tune(probs[~fold], y[~fold], targets, a_idx)
            correct += int((adjust(probs[fold], o, a_idx, t).argmax(1) == y[fold]).sum())
        offsets, threshold = tune(probs, y, targets, a_idx)
        base_acc = float((probs.argmax(1) == y).mean())
        model = ThresholdModel(base, offsets, abstain, threshold)
        shifted = {base.labels[i]: float(offsets[i]) for i in targets if offsets[i] != 0}
        return model, NodeResult(
            dev_metrics={"accuracy": correct / len(y)}, train_seconds=time.monotonic() - t0,
            notes=f"base dev accuracy {base_acc:.4f}; cross-fitted {correct / len(y):.4f}",
            chosen={"offsets": shifted, "threshold": threshold, "abstain": abstain})


def load_threshold(folder: Path, load_base: object) -> ThresholdModel:
    meta = json.loads((Path(folder) / "adaptloop_model.json").read_text(encoding="utf-8"))
    base = load_base(Path(folder) / "base")  # type: ignore[operator]
    return ThresholdModel(base, meta["offsets"], meta["abstain"], meta["threshold"])
