"""Per-example predictions (every scored row, not only the mean) and their metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from adaptloop.evaluate.entities import entity_metrics
from adaptloop.evaluate.metrics import classification_metrics
from adaptloop.train.base import Progress, TrainedModel, no_progress
from adaptloop.types import Example, TaskSpec


def predict_chunked(model: TrainedModel, texts: Sequence[str], *, progress: Progress = no_progress,
                    what: str = "predict", chunk: int = 512) -> np.ndarray:
    """``model.predict_proba`` in chunks, with a progress bar."""
    bar = progress(what, len(texts))
    parts = []
    for s in range(0, len(texts), chunk):
        parts.append(model.predict_proba(list(texts[s:s + chunk])))
        bar(len(parts[-1]))
    return np.concatenate(parts) if parts else np.zeros((0, len(model.labels)))


def score_rows(model: TrainedModel, examples: Sequence[Example], *,
               progress: Progress = no_progress, what: str = "score") -> list[dict[str, Any]]:
    """Per-example predictions: id, text, gold, predicted label, confidence.

    For an extraction model (``kind == "tagger"``): id, text, ``gold`` spans and ``pred``
    spans ``[start, end, label, score]``.
    """
    if getattr(model, "kind", "") == "tagger":
        return span_rows(model, examples, progress=progress, what=what)
    probs = predict_chunked(model, [e.text for e in examples], progress=progress, what=what)
    rows = []
    for e, p in zip(examples, probs):
        k = int(p.argmax())
        rows.append({"id": e.id, "text": e.text, "label": e.label,
                     "pred": model.labels[k], "confidence": round(float(p[k]), 5)})
    return rows


def span_rows(model: Any, examples: Sequence[Example], *, progress: Progress = no_progress,
              what: str = "score", chunk: int = 256) -> list[dict[str, Any]]:
    bar = progress(what, len(examples))
    rows = []
    for s in range(0, len(examples), chunk):
        part = examples[s:s + chunk]
        for e, pred in zip(part, model.predict_spans([e.text for e in part])):
            rows.append({"id": e.id, "text": e.text, "label": e.label, "gold": [list(sp) for sp in e.spans],
                         "pred": [[p["start"], p["end"], p["label"], p["score"]] for p in pred]})
        bar(len(part))
    return rows


def constant_rows(rows: Sequence[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The rows as the best constant predictor would score them: the most frequent gold label for
    classification, no entities at all for extraction. Returns (what it predicts, rows)."""
    if rows and "gold" in rows[0]:
        return "no entities", [{**r, "pred": []} for r in rows]
    labels = [r["label"] for r in rows]
    top = max(sorted(set(labels)), key=labels.count) if labels else ""
    return f"always '{top}'", [{**r, "pred": top, "confidence": 1.0} for r in rows]


def metrics_of(spec: TaskSpec, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    if spec.family == "extraction":
        return entity_metrics([r["text"] for r in rows], [r["gold"] for r in rows], [r["pred"] for r in rows],
                              labels=spec.labels)
    return classification_metrics([r["label"] for r in rows], [r["pred"] for r in rows],
                                  labels=spec.labels, out_of_scope_label=spec.out_of_scope_label)
