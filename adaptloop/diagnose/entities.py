"""Diagnosis for extraction: what kind of entity errors a model makes, as pure functions.

``rows`` come from :func:`adaptloop.evaluate.rows.score_rows` for an extraction task:
``{"id", "text", "gold": [[start, end, label]], "pred": [[start, end, label, score]]}``.
Every predicted and every gold entity that is not an exact match is classified once:

- a prediction overlapping a gold entity of the same type with other boundaries: boundary error;
- overlapping one of another type: type error (gold type → predicted type);
- overlapping nothing: spurious (a false positive out of thin air);
- a gold entity that no prediction overlaps: missed.

Findings: per-type over-prediction (false positives : false negatives ≥ 1.5) and
under-prediction (the reverse), spurious entities on entity-free sentences, boundary
errors, type confusions, the learning curve's shape, and token-level label noise.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from adaptloop.diagnose.findings import (
    MAX_EXAMPLES,
    SKEW_RATIO,
    Diagnosis,
    Finding,
    _pair,
    _severity,
    fit_gap,
    label_noise,
)
from adaptloop.evaluate.rows import row_wrong
from adaptloop.types import finding_rank

Row = Mapping[str, Any]
MAX_NOISE_PAIRS = 5


def _overlap(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def entity_errors(rows: Sequence[Row]) -> dict[str, Any]:
    """Counts of every error class, per type, with the ids of the rows they occur in."""
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    tp: Counter[str] = Counter()
    ids: dict[str, list[str]] = defaultdict(list)
    boundary, spurious, missed, empty_rows, empty_hit = 0, 0, 0, 0, 0
    types: Counter[tuple[str, str]] = Counter()
    for r in rows:
        gold = [tuple(g[:3]) for g in r["gold"]]
        pred = [tuple(p[:3]) for p in r["pred"]]
        exact = set(gold) & set(pred)
        for g in exact:
            tp[g[2]] += 1
        if not gold:
            empty_rows += 1
            if pred:
                empty_hit += 1
                ids["spurious_entities"].append(r["id"])
        for p in pred:
            if p in exact:
                continue
            fp[p[2]] += 1
            ids[f"fp:{p[2]}"].append(r["id"])
            hits = [g for g in gold if _overlap(g, p)]
            if not hits:
                spurious += 1
            elif any(g[2] == p[2] for g in hits):
                boundary += 1
                ids["boundary_errors"].append(r["id"])
            else:
                types[(hits[0][2], p[2])] += 1
                ids[f"type:{hits[0][2]}>{p[2]}"].append(r["id"])
        for g in gold:
            if g in exact:
                continue
            fn[g[2]] += 1
            ids[f"fn:{g[2]}"].append(r["id"])
            if not any(_overlap(g, p) for p in pred):
                missed += 1
    return {"tp": tp, "fp": fp, "fn": fn, "boundary": boundary, "spurious": spurious, "missed": missed,
            "type_pairs": types, "empty_rows": empty_rows, "empty_with_predictions": empty_hit, "ids": ids}


def _ids(ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(ids))[:MAX_EXAMPLES]


def type_errors(rows: Sequence[Row], *, min_errors: int = 3) -> list[Finding]:
    """Over- and under-prediction per entity type (false positives vs false negatives)."""
    c = entity_errors(rows)
    total = sum(c["fp"].values()) + sum(c["fn"].values())
    out = []
    for t in sorted(set(c["fp"]) | set(c["fn"])):
        fp, fn, tp = c["fp"][t], c["fn"][t], c["tp"][t]
        ev = {"false_positives": fp, "false_negatives": fn, "true_positives": tp,
              "fp_fn_ratio": round(fp / fn, 2) if fn else None}
        if fp >= min_errors and fp >= SKEW_RATIO * fn:
            out.append(Finding(
                kind="over_prediction",
                summary=f"'{t}' is over-predicted: {fp} false positives vs {fn} false negatives "
                        f"(precision {tp / max(1, tp + fp):.2f}, recall {tp / max(1, tp + fn):.2f})",
                severity=_severity(fp / max(1, total)), target={"label": t},
                evidence={**ev, "example_ids": _ids(c["ids"][f"fp:{t}"])},
                suggests=("negatives", "span-threshold", "clean")))
        elif fn >= min_errors and fn >= SKEW_RATIO * fp:
            out.append(Finding(
                kind="under_prediction",
                summary=f"'{t}' is under-predicted: {fn} false negatives vs {fp} false positives "
                        f"(recall {tp / max(1, tp + fn):.2f})",
                severity=_severity(fn / max(1, total)), target={"label": t},
                evidence={**ev, "example_ids": _ids(c["ids"][f"fn:{t}"])},
                suggests=("more-epochs", "diversify", "larger-encoder")))
    return out


def structure_errors(rows: Sequence[Row], *, min_errors: int = 3) -> list[Finding]:
    """Spurious entities on entity-free sentences, boundary errors and type confusions."""
    c = entity_errors(rows)
    total = sum(c["fp"].values()) + sum(c["fn"].values())
    out = []
    if c["empty_with_predictions"] >= min_errors:
        n, k = c["empty_rows"], c["empty_with_predictions"]
        out.append(Finding(
            kind="spurious_entities",
            summary=f"entities predicted in {k} of {n} entity-free sentences; {c['spurious']} predictions "
                    "overlap no gold entity at all",
            severity=_severity(max(k / max(1, n), c["spurious"] / max(1, total))), target={},
            evidence={"entity_free": n, "with_predictions": k, "spurious": c["spurious"],
                      "example_ids": _ids(c["ids"]["spurious_entities"])},
            suggests=("negatives", "span-threshold")))
    if c["boundary"] >= min_errors:
        out.append(Finding(
            kind="boundary_errors",
            summary=f"{c['boundary']} predictions have the right type but wrong boundaries",
            severity=_severity(2 * c["boundary"] / max(1, total)), target={},
            evidence={"count": c["boundary"], "example_ids": _ids(c["ids"]["boundary_errors"])},
            suggests=("more-epochs", "larger-encoder", "clean")))
    for (a, b), k in c["type_pairs"].most_common(3):
        if k < min_errors:
            break
        out.append(Finding(
            kind="type_confusion",
            summary=f"{k} '{a}' entities predicted as '{b}'",
            severity=_severity(2 * k / max(1, total)), target={"labels": list(_pair(a, b))},
            evidence={"count": k, "gold": a, "pred": b, "example_ids": _ids(c["ids"][f"type:{a}>{b}"])},
            suggests=("larger-encoder", "diversify")))
    return out


def diagnose_entities(rows: Sequence[Row], labels: Sequence[str], *,
                      curve: Sequence[Mapping[str, Any]] | None = None, dev_f1: float | None = None,
                      label_issues: Sequence[Mapping[str, Any]] | None = None, n_train: int = 0) -> Diagnosis:
    """Every extraction detector over one model's dev rows (curve and label issues when given).

    The curve's ``dev_f1`` plays the part of dev accuracy for :func:`fit_gap`; token accuracy
    on train is not comparable with entity F1, so only the curve's shape is read.
    """
    rows = list(rows)
    findings = [*type_errors(rows), *structure_errors(rows)]
    if curve:
        points = [{k: v for k, v in p.items() if k not in ("dev_f1", "train_accuracy")}
                  | {"dev_accuracy": p["dev_f1"]} for p in curve if "dev_f1" in p]
        findings += fit_gap(points, dev_accuracy=dev_f1)
    if label_issues:  # words, not sentences; the five heaviest pairs are what a reader can act on
        findings += label_noise(label_issues, n_train=n_train, n_classes=len(labels) + 1,
                                unit="training words")[:MAX_NOISE_PAIRS]
    wrong = sum(1 for r in rows if row_wrong(r))
    return Diagnosis(findings=tuple(sorted(findings, key=finding_rank)), n=len(rows), errors=wrong)
