"""The regression gate: a candidate replaces the incumbent only if it breaks (almost) nothing.

For every frozen eval set the candidate must pass — the task's current one and every
earlier checkpoint's (the ratchet) — two rules, both from the doctrine:

1. it breaks at most ``epsilon`` examples (absolute count) that the incumbent got right;
2. its primary metric is not worse beyond noise: the upper end of the paired bootstrap
   interval of (candidate − incumbent) must not be below zero.

Pure functions over per-example rows (``evaluate.rows.score_rows``); nothing here trains.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from adaptloop.evaluate.metrics import primary
from adaptloop.evaluate.rows import metrics_of
from adaptloop.types import TaskSpec


def row_correct(row: dict[str, Any]) -> bool:
    """Whether a scored row is right (classification: the label; extraction: every span)."""
    if "gold" in row:
        from adaptloop.diagnose.entities import row_wrong

        return not row_wrong(row)
    return row["label"] == row["pred"]


@dataclass(frozen=True)
class SetResult:
    """Candidate vs incumbent on one frozen eval set."""

    eval_set: str
    n: int
    incumbent: float
    candidate: float
    ci_low: float  # paired bootstrap interval of candidate − incumbent
    ci_high: float
    broken: list[dict[str, Any]]  # previously correct, now wrong: id, text, label, was, now
    fixed: int  # previously wrong, now right
    passed: bool
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GateResult:
    passed: bool
    epsilon: int
    metric: str
    sets: list[SetResult]

    @property
    def reasons(self) -> list[str]:
        return [r for s in self.sets for r in s.reasons]

    @property
    def n_broken(self) -> int:
        return sum(len(s.broken) for s in self.sets)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "epsilon": self.epsilon, "metric": self.metric,
                "n_broken": self.n_broken, "reasons": self.reasons, "sets": [asdict(s) for s in self.sets]}


def paired_bootstrap(spec: TaskSpec, incumbent: Sequence[dict[str, Any]], candidate: Sequence[dict[str, Any]],
                     *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """The (alpha/2, 1 − alpha/2) interval of metric(candidate) − metric(incumbent) over the same
    resampled examples. Accuracy is vectorised; other metrics are recomputed per resample."""
    n = len(incumbent)
    if n == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    if spec.primary_metric == "accuracy" and spec.family == "classification":
        diff = (np.array([row_correct(r) for r in candidate], dtype=float)
                - np.array([row_correct(r) for r in incumbent], dtype=float))
        deltas = diff[idx].mean(axis=1)
    else:
        n_boot = min(n_boot, 300)  # a full metric per resample: keep it to seconds
        deltas = np.array([primary(metrics_of(spec, [candidate[i] for i in ix]), spec.primary_metric)
                           - primary(metrics_of(spec, [incumbent[i] for i in ix]), spec.primary_metric)
                           for ix in idx[:n_boot]])
    lo, hi = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def compare(spec: TaskSpec, eval_set: str, incumbent: Sequence[dict[str, Any]],
            candidate: Sequence[dict[str, Any]], *, epsilon: int | None = 2, n_boot: int = 1000,
            seed: int = 0) -> SetResult:
    """Both rules on one eval set (``epsilon=None``: the noise rule only); rows must be in the same
    order (same example ids)."""
    if [r["id"] for r in incumbent] != [r["id"] for r in candidate]:
        raise ValueError("incumbent and candidate rows are not the same examples in the same order")
    was = [row_correct(r) for r in incumbent]
    now = [row_correct(r) for r in candidate]
    broken = [{"id": c["id"], "text": c["text"], "label": c["label"], "was": i["pred"], "now": c["pred"]}
              for i, c, w, k in zip(incumbent, candidate, was, now) if w and not k]
    fixed = sum(1 for w, k in zip(was, now) if k and not w)
    inc = primary(metrics_of(spec, incumbent), spec.primary_metric) if incumbent else 0.0
    cand = primary(metrics_of(spec, candidate), spec.primary_metric) if candidate else 0.0
    lo, hi = paired_bootstrap(spec, incumbent, candidate, n_boot=n_boot, seed=seed)
    reasons = []
    if epsilon is not None and len(broken) > epsilon:
        reasons.append(f"eval set {eval_set}: breaks {len(broken)} examples the incumbent got right "
                       f"(allowed {epsilon})")
    if hi < 0:
        reasons.append(f"eval set {eval_set}: {spec.primary_metric} {cand:.4f} vs {inc:.4f}, worse beyond "
                       f"noise (paired bootstrap 95% interval of the change [{lo:+.4f}, {hi:+.4f}])")
    return SetResult(eval_set=eval_set, n=len(candidate), incumbent=inc, candidate=cand, ci_low=lo, ci_high=hi,
                     broken=broken, fixed=fixed, passed=not reasons, reasons=reasons)


def gate(spec: TaskSpec, sets: Sequence[tuple[str, Sequence[dict[str, Any]], Sequence[dict[str, Any]]]], *,
         epsilon: int = 2, n_boot: int = 1000, seed: int = 0,
         fresh: Sequence[tuple[str, Sequence[dict[str, Any]], Sequence[dict[str, Any]]]] = ()) -> GateResult:
    """The gate over every eval set ``(id, incumbent rows, candidate rows)``: pass only if all pass.

    ``fresh`` sets (a checkpoint frozen in this very cycle, full of the incumbent's own failures)
    bind on the noise rule only: the candidate must not be worse there beyond noise."""
    results = [compare(spec, sid, inc, cand, epsilon=epsilon, n_boot=n_boot, seed=seed)
               for sid, inc, cand in sets]
    results += [compare(spec, sid, inc, cand, epsilon=None, n_boot=n_boot, seed=seed)
                for sid, inc, cand in fresh]
    return GateResult(passed=bool(results) and all(r.passed for r in results), epsilon=epsilon,
                      metric=spec.primary_metric, sets=results)
