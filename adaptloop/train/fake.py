"""A test fake behind the Trainer seam: a bag-of-words nearest-centroid classifier.

Deterministic, instant and dependency-free, so agent and CLI tests run in milliseconds.
It learns for real (centroids of hashed word counts), so tests can still check that
predictions follow the data.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from adaptloop.train.base import FitContext, label_ids
from adaptloop.types import Example, NodeResult, Pipeline, TaskSpec

DIM = 256


def _features(texts: Sequence[str]) -> np.ndarray:
    x = np.zeros((len(texts), DIM), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().split():
            x[i, zlib.crc32(w.encode()) % DIM] += 1.0
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-9)


class FakeModel:
    def __init__(self, labels: Sequence[str], centroids: np.ndarray) -> None:
        self.labels = tuple(labels)
        self.centroids = centroids

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        s = _features(texts) @ self.centroids.T * 10.0
        p = np.exp(s - s.max(1, keepdims=True))
        return p / p.sum(1, keepdims=True)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "adaptloop_model.json").write_text(json.dumps(
            {"kind": "fake", "labels": list(self.labels), "centroids": self.centroids.tolist()}))


class FakeTrainer:
    """Trainer fake: fits class centroids; sleeps ``delay`` seconds to mimic cost."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[Pipeline] = []

    def fit(self, spec: TaskSpec, pipeline: Pipeline, train: Sequence[Example],
            dev: Sequence[Example], ctx: FitContext) -> tuple[FakeModel, NodeResult]:
        self.calls.append(pipeline)
        if spec.family == "extraction" and pipeline.strategy == "ensemble":  # the real one, over fake taggers
            from adaptloop.train.ensemble import EnsembleTrainer

            return EnsembleTrainer().fit(spec, pipeline, train, dev, ctx)
        x, y = _features([e.text for e in train]), label_ids(train, spec.labels)
        cents = np.zeros((len(spec.labels), DIM), dtype=np.float32)
        for k in range(len(spec.labels)):
            if (y == k).any():
                cents[k] = x[y == k].mean(0)
        model = FakeModel(spec.labels, cents)
        acc = 0.0
        if dev:
            pred = model.predict_proba([e.text for e in dev]).argmax(1)
            acc = float((pred == label_ids(dev, spec.labels)).mean())
            ctx.report(acc)  # as a fit's dev check does
        time.sleep(self.delay)
        return model, NodeResult(dev_metrics={"accuracy": acc}, train_seconds=self.delay)


def fake_trainer(strategy: str, delay: float = 0.0):
    """A module-level factory (``make_trainer`` seam) that pickles, so worker processes can use it.

    Extraction strategies get the gazetteer fake; ``span-threshold`` is the real one (it only
    reads the parent model's scores).
    """
    if strategy in ("tagger", "tagger-lora", "frozen-tagger"):
        return FakeTaggerTrainer(delay=delay)
    if strategy == "span-threshold":
        from adaptloop.train.span_threshold import SpanThresholdTrainer

        return SpanThresholdTrainer()
    return FakeTrainer(delay=delay)


class FakeTagger:
    """Extraction fake: a gazetteer of the training mentions, matched case-insensitively on word bounds."""

    kind = "tagger"
    encoder_name = "fake"

    def __init__(self, labels: Sequence[str], gazetteer: dict[str, str], thresholds: dict | None = None) -> None:
        self.labels = tuple(labels)
        self.gazetteer = gazetteer
        self.thresholds = dict(thresholds or {})

    def token_probs(self, texts: Sequence[str], batch_size: int = 32) -> list[tuple[list[tuple[int, int]], np.ndarray]]:
        """Per text: its words' offsets and one-hot tags (O, then B-/I- per type) of the gazetteer's matches,
        as a real tagger's per-subword probabilities are laid out (``TaggerEnsemble`` averages them)."""
        from adaptloop.data.spans import word_units
        from adaptloop.train.tagger import align_labels

        out = []
        for text, found in zip(texts, self.predict_spans(texts, thresholds={})):
            units = word_units(text)
            ids = align_labels(units, [(f["start"], f["end"], f["label"]) for f in found], self.labels)
            out.append((units, np.eye(1 + 2 * len(self.labels), dtype=np.float32)[ids]))
        return out

    def predict_spans(self, texts: Sequence[str], *, thresholds: dict | None = None) -> list[list[dict]]:
        import re

        out = []
        for t in texts:
            found: list[dict] = []
            low = t.lower()
            for mention in sorted(self.gazetteer, key=len, reverse=True):
                for m in re.finditer(rf"(?<!\w){re.escape(mention)}(?!\w)", low):
                    if all(m.end() <= f["start"] or m.start() >= f["end"] for f in found):
                        found.append({"start": m.start(), "end": m.end(), "label": self.gazetteer[mention],
                                      "score": 1.0})
            out.append(sorted(found, key=lambda f: f["start"]))
        return out

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "adaptloop_model.json").write_text(json.dumps(
            {"kind": "fake-tagger", "labels": list(self.labels), "gazetteer": self.gazetteer,
             "thresholds": self.thresholds}))


class FakeTaggerTrainer:
    """Extraction trainer fake: a gazetteer of the training mentions; sleeps ``delay`` seconds to mimic cost."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def fit(self, spec: TaskSpec, pipeline: Pipeline, train: Sequence[Example], dev: Sequence[Example],
            ctx: FitContext) -> tuple[FakeTagger, NodeResult]:
        from adaptloop.evaluate.entities import entity_metrics

        time.sleep(self.delay)

        gaz = {e.text[s:t].lower(): lab for e in train for s, t, lab in e.spans}
        model = FakeTagger(spec.labels, gaz)
        f1 = 0.0
        if dev:
            pred = [[(p["start"], p["end"], p["label"]) for p in row]
                    for row in model.predict_spans([e.text for e in dev])]
            f1 = entity_metrics([e.text for e in dev], [list(e.spans) for e in dev], pred)["f1"]
        return model, NodeResult(dev_metrics={"f1": f1}, train_seconds=0.0,
                                 curve=[{"step": 1, "epoch": 1.0, "dev_f1": f1}],
                                 chosen={"checkpoint": ctx.checkpoint != float("inf")})  # held to the trailing rule
