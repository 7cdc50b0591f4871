"""Per-example predictions (every scored row, not only the mean) and their metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adaptloop.evaluate.entities import entity_metrics
from adaptloop.evaluate.metrics import classification_metrics
from adaptloop.types import TaskSpec


def row_wrong(row: dict[str, Any]) -> bool:
    """Whether an extraction row's predicted spans differ from its gold spans (scores ignored)."""
    return {tuple(g[:3]) for g in row["gold"]} != {tuple(p[:3]) for p in row["pred"]}


def row_correct(row: dict[str, Any]) -> bool:
    """Whether a scored row is right (classification: the label; extraction: every span; generation:
    full marks on the kind's metric)."""
    if "output" in row:
        return bool(row["correct"])
    return not row_wrong(row) if "gold" in row else row["label"] == row["pred"]


def constant_rows(rows: Sequence[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The rows as the best constant predictor would score them: the most frequent gold label for
    classification, no entities at all for extraction. Returns (what it predicts, rows)."""
    if rows and "gold" in rows[0]:
        return "no entities", [{**r, "pred": []} for r in rows]
    labels = [r["label"] for r in rows]
    top = max(sorted(set(labels)), key=labels.count) if labels else ""
    return f"always '{top}'", [{**r, "pred": top, "confidence": 1.0} for r in rows]


def metrics_of(spec: TaskSpec, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The task's metrics over scored rows (generation rows carry their own per-row score)."""
    if spec.family == "generation":
        n = len(rows)
        return {"n": n, spec.primary_metric: sum(r["score"] for r in rows) / n if n else 0.0,
                "format_ok": sum(r["format_ok"] for r in rows) / n if n else 0.0}
    if spec.family == "extraction":
        return entity_metrics([r["text"] for r in rows], [r["gold"] for r in rows], [r["pred"] for r in rows],
                              labels=spec.labels)
    return classification_metrics([r["label"] for r in rows], [r["pred"] for r in rows],
                                  labels=spec.labels, out_of_scope_label=spec.out_of_scope_label)
