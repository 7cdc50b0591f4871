"""Entity-level metrics for extraction (seqeval), as pure functions over character spans.

Gold and predicted spans of each text are turned into IOB2 tags over the same word units
(cut at every gold and predicted boundary), so seqeval's strict entity match is an exact
(start, end, type) match: micro precision / recall / F1, macro F1 and a per-type table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from seqeval.metrics import classification_report
from seqeval.metrics.sequence_labeling import get_entities

from adaptloop.data.spans import Span, spans_to_tags


def entity_metrics(texts: Sequence[str], gold: Sequence[Sequence[Span]], pred: Sequence[Sequence[Span]], *,
                   labels: Sequence[str] = ()) -> dict:
    """Micro and macro entity scores, and per type ``{precision, recall, f1, support}``.

    Args:
        texts: the inputs, length n.
        gold: gold spans per text.
        pred: predicted spans per text (scores, if any, are ignored).
        labels: the task's entity types; every one gets a row in ``per_type``.

    Returns:
        ``{"n", "f1", "precision", "recall", "macro_f1", "n_gold", "n_pred", "token_f1", "per_type"}``;
        ``token_f1`` is a lenient word-level score (each word's entity type, boundaries ignored),
        reported beside the strict entity F1, never instead of it.
    """
    y_true, y_pred = _tags(texts, gold, pred)
    # word-level (presidio-evaluator style): each word unit's type, B/I ignored, O words skipped
    pairs = [(a[2:] if a != "O" else "O", b[2:] if b != "O" else "O")
             for t, q in zip(y_true, y_pred) for a, b in zip(t, q)]
    hit = sum(1 for a, b in pairs if a == b != "O")
    tok_p = hit / max(1, sum(1 for _, b in pairs if b != "O"))
    tok_r = hit / max(1, sum(1 for a, _ in pairs if a != "O"))
    n_gold = sum(len(g) for g in gold)
    n_pred = sum(len(p) for p in pred)
    rep = classification_report(y_true, y_pred, output_dict=True, zero_division=0) if (n_gold or n_pred) else {}
    micro = rep.get("micro avg", {})
    per = {}
    for lab in sorted(set(labels) | {k for k in rep if not k.endswith(" avg")}):
        r = rep.get(lab, {})
        per[lab] = {"precision": float(r.get("precision", 0.0)), "recall": float(r.get("recall", 0.0)),
                    "f1": float(r.get("f1-score", 0.0)), "support": int(r.get("support", 0))}
    present = [v for v in per.values() if v["support"] > 0]
    return {
        "n": len(texts),
        "f1": float(micro.get("f1-score", 1.0 if not (n_gold or n_pred) else 0.0)),
        "precision": float(micro.get("precision", 0.0)),
        "recall": float(micro.get("recall", 0.0)),
        # macro over types that occur in gold, so a small set is not punished for absent types
        "macro_f1": sum(v["f1"] for v in present) / len(present) if present else 0.0,
        "n_gold": n_gold, "n_pred": n_pred,
        "token_f1": 2 * tok_p * tok_r / (tok_p + tok_r) if tok_p + tok_r else 0.0,
        "per_type": per,
    }


def _tags(texts: Sequence[str], gold: Sequence[Sequence[Span]],
          pred: Sequence[Sequence[Span]]) -> tuple[list[list[str]], list[list[str]]]:
    """IOB2 tags of gold and predicted spans over the same word units, per text."""
    if not len(texts) == len(gold) == len(pred):
        raise ValueError(f"{len(texts)} texts, {len(gold)} gold rows, {len(pred)} predicted rows")
    y_true, y_pred = [], []
    for text, g, p in zip(texts, gold, pred):
        g3 = [tuple(s[:3]) for s in g]
        p3 = [tuple(s[:3]) for s in p]
        y_true.append(spans_to_tags(text, g3, also=p3)[1])
        y_pred.append(spans_to_tags(text, p3, also=g3)[1])
    return y_true, y_pred


def entity_counts(texts: Sequence[str], gold: Sequence[Sequence[Span]],
                  pred: Sequence[Sequence[Span]]) -> np.ndarray:
    """Per text: (exact matches, predicted entities, gold entities) as seqeval counts them, shape
    (n, 3). Summed over any subset of rows they give that subset's micro F1 (``micro_f1``), so a
    bootstrap resamples rows without re-tagging them."""
    y_true, y_pred = _tags(texts, gold, pred)
    out = np.zeros((len(y_true), 3), dtype=np.int64)
    for i, (t, q) in enumerate(zip(y_true, y_pred)):
        true, got = set(get_entities(t)), set(get_entities(q))
        out[i] = (len(true & got), len(got), len(true))
    return out


def micro_f1(counts: np.ndarray) -> np.ndarray:
    """Micro entity F1 from summed ``entity_counts`` (last axis: matches, predicted, gold); 1.0 where
    there is nothing to find and nothing was found, as ``entity_metrics`` has it."""
    tp, n_pred, n_gold = counts[..., 0], counts[..., 1], counts[..., 2]
    total = n_pred + n_gold
    return np.where(total > 0, 2 * tp / np.maximum(total, 1), 1.0)
