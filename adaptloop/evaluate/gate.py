"""The regression gate: a candidate replaces the incumbent only if it breaks (almost) nothing.

For every frozen eval set the candidate must pass — the task's current one and every
earlier checkpoint's (the ratchet) — two rules, both from the doctrine:

1. **breaks**: what it breaks is judged against what it fixes on the same examples. A unit
   is an example for classification and a gold entity for extraction (a tagger at a modest
   F1 gets few whole sentences right, so counting sentences would let it lose entities
   unseen). ``b`` = units the incumbent got right and the candidate does not, ``f`` = the
   reverse (the discordant pairs of McNemar's test). Units whose gold label the data itself
   doubts weigh ``DOUBT_WEIGHT`` in ``b`` (they are still listed).

   - fewer than ``MIN_PAIRS`` discordant units (too few for any test): it may break ``epsilon``
     units, or more when it fixes at least as many on the same set (a production model right on
     nearly all of its own eval set leaves few units to judge by: 3 broken and 3 fixed of 151 is
     no regression);
   - otherwise the exact binomial test on the discordant units (each a fair coin under "the
     candidate fixes no more than it breaks") must show that fixes outnumber breaks:
     ``P(X <= b | b + f, 1/2) <= BREAK_ALPHA``. The set's size enters through the pairs: a
     large set with many fixes may break more than ``epsilon``; breaking as much as it fixes
     never passes.
2. **noise**: its primary metric is not worse beyond noise: the upper end of the paired
   bootstrap interval of (candidate − incumbent) must not be below zero.

With two or more binding sets the noise rule also applies to all of them pooled: small sets
each hide a drop that their union shows. And a third rule, **gain**: over every set together
(binding and this cycle's fresh checkpoint), the candidate must fix more units than it breaks.
Every set's result carries, in ``notes``, which rule decided and with what numbers, whether it
passed or not.

A **student** (a smaller model distilled from the incumbent, ``agent.distill``) is not meant to be
better: its gain is speed. For it the breaks rule is a non-inferiority margin (``margin_rule``:
not worse than a set share of the units beyond noise) and the gain rule is waived; the noise
rule binds as for any candidate. False-promotion and
false-refusal rates of these rules, by simulation: ``benchmarks/gate_simulation.py``.

Pure functions over per-example rows (``evaluate.rows.score_rows``); nothing here trains.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import betainc

from adaptloop.evaluate.entities import entity_counts, micro_f1
from adaptloop.evaluate.metrics import primary
from adaptloop.evaluate.rows import metrics_of, row_correct
from adaptloop.types import GateResult, SetResult, TaskSpec

MIN_PAIRS = 10  # discordant units below which the paired test cannot tell: epsilon binds absolutely
BREAK_ALPHA = 0.35  # one-sided level at which fixes must outnumber breaks (benchmarks/gate_simulation.py)
DOUBT_WEIGHT = 0.5  # a broken unit whose gold label the data doubts counts this much


def broken_units(incumbent: Sequence[dict[str, Any]],
                 candidate: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The units the incumbent got right and the candidate does not (id, text, label, was, now),
    and how many units the candidate newly gets right. Classification: one unit per example;
    extraction: one per gold entity (``label`` is ``[start, end, type]``; ``now`` lists the
    candidate's spans that overlap it)."""
    broken: list[dict[str, Any]] = []
    fixed = 0
    for i, c in zip(incumbent, candidate):
        if "gold" not in c:
            was, now = row_correct(i), row_correct(c)
            if was and not now:
                broken.append({"id": c["id"], "text": c["text"], "label": c["label"], "was": i["pred"],
                               "now": c["pred"]})
            fixed += now and not was
            continue
        gold = {tuple(g[:3]) for g in c["gold"]}
        had = gold & {tuple(p[:3]) for p in i["pred"]}
        has = gold & {tuple(p[:3]) for p in c["pred"]}
        for s, e, t in sorted(had - has):
            broken.append({"id": c["id"], "text": c["text"], "label": [s, e, t], "was": "found",
                           "now": [list(p[:3]) for p in c["pred"] if p[0] < e and s < p[1]] or "missed"})
        fixed += len(has - had)
    return broken, fixed


def paired_bootstrap(spec: TaskSpec, incumbent: Sequence[dict[str, Any]], candidate: Sequence[dict[str, Any]],
                     *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """The (alpha/2, 1 − alpha/2) interval of metric(candidate) − metric(incumbent) over the same
    resampled examples. Accuracy and entity micro F1 are vectorised (per-row counts, summed per
    resample); other metrics are recomputed per resample."""
    n = len(incumbent)
    if n == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    if spec.primary_metric == "accuracy" and spec.family == "classification":
        diff = (np.array([row_correct(r) for r in candidate], dtype=float)
                - np.array([row_correct(r) for r in incumbent], dtype=float))
        deltas = diff[idx].mean(axis=1)
    elif spec.primary_metric == "f1" and spec.family == "extraction":
        counts = [entity_counts([r["text"] for r in rows], [r["gold"] for r in rows], [r["pred"] for r in rows])
                  for rows in (candidate, incumbent)]
        deltas = micro_f1(counts[0][idx].sum(axis=1)) - micro_f1(counts[1][idx].sum(axis=1))
    elif spec.family == "generation":  # the metric is the mean of a per-row score
        diff = (np.array([r["score"] for r in candidate], dtype=float)
                - np.array([r["score"] for r in incumbent], dtype=float))
        deltas = diff[idx].mean(axis=1)
    else:
        n_boot = min(n_boot, 300)  # a full metric per resample: keep it to seconds
        deltas = np.array([primary(metrics_of(spec, [candidate[i] for i in ix]), spec.primary_metric)
                           - primary(metrics_of(spec, [incumbent[i] for i in ix]), spec.primary_metric)
                           for ix in idx[:n_boot]])
    lo, hi = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def binomial_tail(b: float, f: float) -> float:
    """P(X <= b) for X ~ Binomial(b + f, 1/2), real-valued ``b`` allowed (a doubted unit weighs
    less than one): the chance of seeing this few breaks among the discordant units if the
    candidate fixed no more than it broke."""
    n = b + f
    if n <= 0 or f <= 0:
        return 1.0
    return float(betainc(f, b + 1.0, 0.5))  # regularised incomplete beta: I_{1/2}(n - b, b + 1)


def break_rule(b: float, f: int, n_broken: int, *, epsilon: int, unit: str) -> tuple[bool, float | None, str]:
    """The breaks rule on one set: (passed, the paired test's p or None, the verdict with its numbers)."""
    shown = (f"breaks {n_broken} {unit} the incumbent got right" + (f" (weighted {b:g})" if b != n_broken else "")
             + f", fixes {f}")
    if b + f < MIN_PAIRS:  # too few discordant units for any test: epsilon, or no more breaks than fixes
        ok = b <= epsilon or b <= f
        why = (f"within epsilon {epsilon}" if b <= epsilon else "no more than it fixes" if ok
               else f"more than epsilon {epsilon} and more than it fixes")
        return ok, None, (f"{shown}; {b + f:g} discordant {unit} are too few to test (< {MIN_PAIRS}), so "
                          f"the absolute rule binds: {why}")
    p = binomial_tail(b, f)
    verdict = "fixes outnumber breaks" if p <= BREAK_ALPHA else "fixes do not clearly outnumber breaks"
    return p <= BREAK_ALPHA, p, (f"{shown}; {verdict} (exact binomial on the discordant {unit}: "
                                 f"P(≤{b:g} of {b + f:g} | ½) = {p:.3f}, must be ≤ {BREAK_ALPHA})")


def margin_rule(b: float, f: int, n_broken: int, n: int, *, margin: float, unit: str) -> tuple[bool, float | None, str]:
    """The breaks rule of a candidate whose gain is not accuracy (a student, whose gain is speed):
    not worse than ``margin`` (a share of the set's ``n`` units) beyond noise. Demanding that fixes
    outnumber breaks would ask a smaller model to be better than its teacher; a margin on the point
    estimate alone would refuse, on 1,000 examples, one student in five that is exactly as good
    (``benchmarks/student_margin_simulation.py``). So: within the margin as measured passes; beyond
    it, the exact binomial on the discordant units asks how likely this many breaks are for a
    candidate exactly ``margin`` worse, ``P(X >= b | b + f, p0)`` with ``p0 = (1 + margin n / (b + f)) / 2``,
    and refuses when that is at most ``BREAK_ALPHA`` (the break rule's level). Returns (passed, that
    P or None, the verdict with its numbers)."""
    allowed, d = margin * n, b + f
    shown = (f"breaks {n_broken} {unit} the incumbent got right" + (f" (weighted {b:g})" if b != n_broken else "")
             + f", fixes {f}; {b - f:g} more broken than fixed, the margin is {margin * 100:g}% of {n} {unit} "
             f"({allowed:.1f})")
    if b - f <= allowed:
        return True, None, shown + ": within it"
    if d < MIN_PAIRS:
        return False, None, shown + f": beyond it, on {d:g} discordant {unit} (too few to test)"
    p0 = min(1.0, (1 + allowed / d) / 2)
    p = float(betainc(b, d - b + 1.0, p0)) if p0 < 1 else 1.0  # P(X >= b), X ~ Binomial(d, p0)
    ok = p > BREAK_ALPHA
    return ok, p, shown + (f": beyond it as measured, {'but not' if ok else 'and'} beyond noise (exact binomial "
                           f"for a candidate exactly at the margin: P(≥{b:g} of {d:g} | {p0:.3f}) = {p:.3f}, "
                           f"refused at ≤ {BREAK_ALPHA})")


def compare(spec: TaskSpec, eval_set: str, incumbent: Sequence[dict[str, Any]],
            candidate: Sequence[dict[str, Any]], *, epsilon: int | None = 2, n_boot: int = 1000,
            seed: int = 0, doubted: frozenset[str] = frozenset(), margin: float | None = None) -> SetResult:
    """Both rules on one eval set (``epsilon=None``: the noise rule only); rows must be in the same
    order (same example ids). ``doubted``: ids of examples whose gold label the data doubts (their
    broken units weigh ``DOUBT_WEIGHT``). ``margin``: the breaks rule is ``margin_rule`` instead
    (a candidate that must be as good, not better)."""
    if [r["id"] for r in incumbent] != [r["id"] for r in candidate]:
        raise ValueError("incumbent and candidate rows are not the same examples in the same order")
    broken, fixed = broken_units(incumbent, candidate)
    inc = primary(metrics_of(spec, incumbent), spec.primary_metric) if incumbent else 0.0
    cand = primary(metrics_of(spec, candidate), spec.primary_metric) if candidate else 0.0
    lo, hi = paired_bootstrap(spec, incumbent, candidate, n_boot=n_boot, seed=seed)
    weighted = sum(DOUBT_WEIGHT if x["id"] in doubted else 1.0 for x in broken)
    reasons, notes, p = [], [], None
    unit = "entities" if spec.family == "extraction" else "examples"
    if epsilon is not None and margin is not None:
        units = sum(len(r["gold"]) if "gold" in r else 1 for r in candidate)
        ok, p, note = margin_rule(weighted, fixed, len(broken), units, margin=margin, unit=unit)
        notes.append(f"eval set {eval_set}: {note}")
        if not ok:
            reasons.append(notes[-1])
    elif epsilon is not None:
        ok, p, note = break_rule(weighted, fixed, len(broken), epsilon=epsilon, unit=unit)
        notes.append(f"eval set {eval_set}: {note}")
        if not ok:
            reasons.append(notes[-1])
    noise = (f"eval set {eval_set}: noise: {spec.primary_metric} {cand:.4f} vs {inc:.4f}, paired bootstrap "
             f"95% interval of the change [{lo:+.4f}, {hi:+.4f}]")
    if hi < 0:
        reasons.append(noise + ": worse beyond noise")
    notes.append(noise + (": worse beyond noise" if hi < 0 else ": not worse beyond noise"))
    return SetResult(eval_set=eval_set, n=len(candidate), incumbent=inc, candidate=cand, ci_low=lo, ci_high=hi,
                     broken=broken, fixed=fixed, passed=not reasons, reasons=reasons, notes=notes,
                     weighted_broken=weighted, p_breaks=p)


def gate(spec: TaskSpec, sets: Sequence[tuple[str, Sequence[dict[str, Any]], Sequence[dict[str, Any]]]], *,
         epsilon: int = 2, n_boot: int = 1000, seed: int = 0,
         fresh: Sequence[tuple[str, Sequence[dict[str, Any]], Sequence[dict[str, Any]]]] = (),
         doubted: frozenset[str] = frozenset(), margin: float | None = None) -> GateResult:
    """The gate over every eval set ``(id, incumbent rows, candidate rows)``: pass only if all pass.

    ``fresh`` sets (a checkpoint frozen in this very cycle, full of the incumbent's own failures)
    bind on the noise rule only: the candidate must not be worse there beyond noise. Two or more
    binding ``sets`` are also pooled for the noise rule. ``doubted``: example ids whose gold label
    the data doubts (see ``compare``); ``margin``: the binding sets' breaks rule is ``margin_rule``
    (a student faces its teacher so). And the **gain** rule: over every set together, binding and
    fresh, the candidate must fix more units than it breaks — a candidate that changes nothing, or
    trades as many errors as it fixes, gives no reason to replace the incumbent (a strong model fed
    systematic flips was replaced by one exactly as good on every eval set and a point worse on
    test: ``benchmarks/planted_flips.py``)."""
    results = [compare(spec, sid, inc, cand, epsilon=epsilon, n_boot=n_boot, seed=seed, doubted=doubted,
                       margin=margin) for sid, inc, cand in sets]
    results += [compare(spec, sid, inc, cand, epsilon=None, n_boot=n_boot, seed=seed)
                for sid, inc, cand in fresh]
    pooled = None
    if len(sets) >= 2:
        pooled = compare(spec, f"pooled ({len(sets)} binding sets)", [r for _, inc, _ in sets for r in inc],
                         [r for _, _, cand in sets for r in cand], epsilon=None, n_boot=n_boot, seed=seed)
    fixed, lost = sum(r.fixed for r in results), sum(len(r.broken) for r in results)
    gained = fixed > lost
    gain = (f"gain: over every eval set together the candidate fixes {fixed} units and gets {lost} wrong that "
            f"the incumbent got right: " + ("a measured gain" if gained else
                                            "no measured gain, so no reason to replace the incumbent"))
    return GateResult(passed=bool(results) and all(r.passed for r in results) and (pooled is None or pooled.passed)
                      and gained, epsilon=epsilon, metric=spec.primary_metric, sets=results, pooled=pooled,
                      gain=gain, gained=gained)


def first_model(metric: str, eval_set: str, n: int, score: float, *, baseline: float | None = None,
                predicts: str = "", ci: tuple[float, float] | None = None) -> GateResult:
    """The gate of a task's first model (a cold start): there is no incumbent, so the winner faces
    the best constant answer on the frozen eval set (``baseline``, what ``predicts`` scores; None
    where no constant answer applies, as for generation) and passes when it beats it. ``ci``: the
    paired bootstrap interval of the gain over the constant answer; a pass whose interval reaches
    zero says so in its notes (better, but not beyond noise)."""
    lo, hi = ci if ci is not None else (0.0, 0.0)
    if baseline is None:
        passed, notes = True, [f"first model: no incumbent; {metric} {score:.4f} on the frozen eval set {eval_set} "
                               f"({n})"]
    else:
        passed = score > baseline + 1e-9
        notes = [f"first model: {metric} {score:.4f} on the frozen eval set {eval_set} ({n}) vs {baseline:.4f} "
                 f"for predicting {predicts}"]
        if passed and ci is not None and lo <= 0:
            notes.append(f"not better than predicting {predicts} beyond noise: 95% interval of the gain "
                         f"[{lo:+.4f}, {hi:+.4f}] reaches zero")
    reasons = [] if passed else [f"no better than predicting {predicts}: {metric} {score:.4f} <= {baseline:.4f}"]
    result = SetResult(eval_set=eval_set, n=n, incumbent=baseline if baseline is not None else 0.0, candidate=score,
                       ci_low=lo, ci_high=hi, broken=[], fixed=0, passed=passed, reasons=reasons, notes=notes)
    return GateResult(passed=passed, epsilon=0, metric=metric, sets=[result])
