"""Decision thresholds on top of any trained model: per-class bias and abstention.

A model that over-predicts a class gets a negative log-offset for it (tuned on dev by coordinate
ascent); a task with an out-of-scope label abstains (predicts that label) when the top probability
is below a threshold. The dev score reported is cross-fitted (tuned on one half, scored on the
other, both ways), so the search does not select a node on a number it tuned to; the saved model
uses values tuned on all of dev.

The abstention threshold is set on in-scope examples alone (``scope_threshold``): the highest
that sends at most ``share`` of in-scope dev examples to the out-of-scope label. Out-of-scope
inputs are as rare in dev as in the training data they were split from (clinc150: 0.7%), not as
common as in traffic (clinc150's test: 18%), so a threshold that maximises dev accuracy barely
moves from zero: measured on clinc150 (frozen MiniLM + LR, n-gram model and their average), it
stayed at 0 and `oos` recall at 0.39-0.45, while abstaining on the least confident 0.5% of
in-scope dev examples gave 0.66-0.73 for 0.3-0.4 points of in-scope accuracy
(`benchmarks/oos_threshold.py`).
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
ABSTAIN_SHARE = 0.005  # [serve] abstain_share's default: in-scope dev examples abstention may take


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


def scope_threshold(probs: np.ndarray, y: np.ndarray, abstain: int, share: float) -> float:
    """The abstention threshold that sends at most ``share`` of the in-scope rows (gold label not
    ``abstain``) to ``abstain`` and keeps the rest: their top probabilities sorted, midway between the
    last of the ``share`` least confident and the next (a row abstains when its top probability is
    below the threshold; midway, a rounding difference in the probabilities moves no row across)."""
    top = np.sort(probs[y != abstain].max(1))
    if top.size == 0:
        return 1.0  # nothing in scope to keep: every row abstains
    allowed = int(np.floor(share * top.size + 1e-9))
    if allowed >= top.size:
        return 1.0
    below = top[allowed - 1] if allowed else 0.0
    return float((below + top[allowed]) / 2) if allowed else float(top[0] * (1 - 1e-6))


def abstention(probs: np.ndarray, y: np.ndarray, abstain: int, share: float) -> dict[str, float | int]:
    """``scope_threshold`` on (probs, y) and what it does there: in-scope rows sent to ``abstain``
    (of how many), out-of-scope rows caught, and caught without it."""
    probs = adjust(probs, np.zeros(probs.shape[1]), None, 0.0)  # as a ThresholdModel sees them (renormalised)
    t = scope_threshold(probs, y, abstain, share)
    pred = adjust(probs, np.zeros(probs.shape[1]), abstain, t).argmax(1)
    ins = y != abstain
    return {"threshold": t, "sent": int((pred[ins] == abstain).sum()), "in_scope": int(ins.sum()),
            "caught": int((pred[~ins] == abstain).sum()), "out_of_scope": int((~ins).sum()),
            "caught_before": int((probs.argmax(1)[~ins] == abstain).sum()),
            "accuracy": float((pred == y).mean()) if len(y) else 0.0}


def tune(probs: np.ndarray, y: np.ndarray, targets: Sequence[int], abstain: int | None,
         share: float = ABSTAIN_SHARE) -> tuple[np.ndarray, float]:
    """Offsets for ``targets`` maximising accuracy on (probs, y), each tried with the abstention
    threshold ``scope_threshold`` sets for it (0 without an out-of-scope label)."""

    def threshold(o: np.ndarray) -> float:
        if abstain is None:
            return 0.0
        return scope_threshold(adjust(probs, o, None, 0.0), y, abstain, share)

    def acc(o: np.ndarray) -> float:
        return float((adjust(probs, o, abstain, threshold(o)).argmax(1) == y).mean())

    offsets = np.zeros(probs.shape[1])
    best = acc(offsets)
    for _ in range(2):  # two sweeps of coordinate ascent
        for c in targets:
            for v in OFFSETS:
                o = offsets.copy()
                o[c] = v
                a = acc(o)
                if a > best + 1e-12:
                    offsets, best = o, a
    return offsets, threshold(offsets)


class ThresholdTrainer:
    """Tunes offsets/abstention of the model at ``hparams["of"]`` (a saved model folder).

    hparams: ``of`` (path), ``labels`` (classes to consider shifting; default: none),
    ``abstain`` (the out-of-scope label, or None), ``share`` (of in-scope dev examples abstention may
    take; default ``ABSTAIN_SHARE``).
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
        share = float(hp.get("share", ABSTAIN_SHARE))
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
            o, t = tune(probs[~fold], y[~fold], targets, a_idx, share)
            correct += int((adjust(probs[fold], o, a_idx, t).argmax(1) == y[fold]).sum())
        offsets, threshold = tune(probs, y, targets, a_idx, share)
        base_acc = float((probs.argmax(1) == y).mean())
        model = ThresholdModel(base, offsets, abstain, threshold)
        shifted = {base.labels[i]: float(offsets[i]) for i in targets if offsets[i] != 0}
        return model, NodeResult(
            dev_metrics={"accuracy": correct / len(y)}, train_seconds=time.monotonic() - t0,
            notes=f"base dev accuracy {base_acc:.4f}; cross-fitted {correct / len(y):.4f}",
            chosen={"offsets": shifted, "threshold": threshold, "abstain": abstain, "share": share})


def load_threshold(folder: Path, load_base: object) -> ThresholdModel:
    meta = json.loads((Path(folder) / "adaptloop_model.json").read_text(encoding="utf-8"))
    base = load_base(Path(folder) / "base")  # type: ignore[operator]
    return ThresholdModel(base, meta["offsets"], meta["abstain"], meta["threshold"])
