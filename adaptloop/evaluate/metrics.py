"""Classification metrics as pure functions over label lists."""

from __future__ import annotations

from collections.abc import Sequence

from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support


def classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], *, labels: Sequence[str],
    out_of_scope_label: str | None = None,
) -> dict:
    """Accuracy, macro-F1 and a per-class table.

    Args:
        y_true: gold labels, length n.
        y_pred: predicted labels, length n.
        labels: the task's label set (fixes the per-class table's rows).
        out_of_scope_label: when set, also ``in_scope_accuracy`` (accuracy over examples whose
            gold label is in scope; predicting out-of-scope there counts as wrong) and
            ``oos_recall`` / ``oos_precision``.

    Returns:
        ``{"n", "accuracy", "macro_f1", "per_class": {label: {precision, recall, f1, support}}}``
        plus the out-of-scope keys when asked.
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} rows, y_pred {len(y_pred)}")
    labels = list(labels)
    present = sorted(set(y_true) | set(y_pred))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    out: dict = {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        # macro over the labels that occur, so a small eval set is not punished for absent classes
        "macro_f1": float(f1_score(y_true, y_pred, labels=[x for x in labels if x in present],
                                   average="macro", zero_division=0)),
        "per_class": {
            lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                  "support": int(s[i])}
            for i, lab in enumerate(labels)
        },
    }
    if out_of_scope_label is not None:
        ins = [(t, q) for t, q in zip(y_true, y_pred) if t != out_of_scope_label]
        oos = [(t, q) for t, q in zip(y_true, y_pred) if t == out_of_scope_label]
        pred_oos = [(t, q) for t, q in zip(y_true, y_pred) if q == out_of_scope_label]
        out["in_scope_accuracy"] = sum(t == q for t, q in ins) / len(ins) if ins else 0.0
        out["oos_recall"] = sum(q == t for t, q in oos) / len(oos) if oos else None
        out["oos_precision"] = (sum(t == q for t, q in pred_oos) / len(pred_oos)
                                if pred_oos else None)
    return out


def primary(metrics: dict, name: str) -> float:
    """The named metric from a metrics dict (``accuracy`` when the name is missing)."""
    return float(metrics[name] if name in metrics else metrics["accuracy"])


def scalars(metrics: dict) -> dict:
    """A metrics dict without its per-class / per-type tables (what the store and the CLI show)."""
    return {k: v for k, v in metrics.items() if k not in ("per_class", "per_type")}
