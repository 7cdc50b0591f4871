"""The experiment graph: nodes are whole pipelines, edges the interventions between them.

Pure functions over a list of ``GraphNode``; no training, no I/O. The search loop asks
which node to expand (UCT with exploration that decays as the budget is spent), whether
the last result was a drop (then it rolls back: the dropped node is never expanded and the
next expansion starts from the best node), whether k rounds passed without gain (then a
recovery move), and when to stop (target reached, budget spent, or a plateau once a recovery
move in every family has gained nothing).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from adaptloop.types import Finding

T = TypeVar("T")

UNEXPANDABLE = ("ensemble", "refit", "threshold", "span-threshold")  # strategies whose nodes get no children
# an ensemble whose dev score is this close to the best node's is the better pick: dev ties and near-ties
# between an ensemble and one of its kind of members went to the ensemble on held-out data (banking77 at
# 20 minutes, a tie at dev 0.9405: eval set 0.9348 vs 0.9318, test 0.9409 vs 0.9325), and an ensemble's
# weights are held near equal at up to this much dev cost (train.ensemble.TOLERANCE)
ENSEMBLE_SLACK = 0.005


@dataclass(frozen=True)
class GraphNode:
    """One node as the search sees it."""

    name: str
    parent: str | None
    pipeline: dict[str, Any]
    status: str = "done"  # done | failed | interrupted | running | pending
    score: float = 0.0  # dev primary metric (0 until done)
    intervention: str = ""
    move: str = ""  # catalogue name of the intervention (or baseline, ensemble, merge, refit)
    seconds: float = 0.0
    model_path: str | None = None
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    order: int = 0  # finishing order; later = larger
    dev: dict[str, Any] = field(default_factory=dict)  # every dev metric (score is the primary one)
    chosen: dict[str, Any] = field(default_factory=dict)  # what the fit settled on (epochs, timings)
    curve: tuple[dict[str, Any], ...] = ()  # dev checks during training
    crashed: bool = False  # failed because the process running it died, not because of the pipeline
    texts_per_second: float | None = None  # its model's speed as serving runs it, measured when it finished

    @property
    def strategy(self) -> str:
        return self.pipeline.get("strategy", "")


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``… : the first not in ``taken``."""
    if name not in taken:
        return name
    return next(f"{name}-{i}" for i in range(2, 10**6) if f"{name}-{i}" not in taken)


def done(nodes: Sequence[GraphNode]) -> list[GraphNode]:
    return sorted((n for n in nodes if n.status == "done"), key=lambda n: n.order)


def scored(nodes: Sequence[GraphNode]) -> list[GraphNode]:
    """Finished nodes with an honest dev score (a refit trained on dev has none)."""
    return [n for n in done(nodes) if n.strategy != "refit"]


def ensemble_slack(dev: dict[str, Any]) -> float:
    """How far below the best node on dev an ensemble may score and still be preferred: ``ENSEMBLE_SLACK``,
    or, for an entity F1 over few gold entities (``n_gold``), one standard error of the best's F1. An
    extraction dev split holds a few hundred entities (presidio_pii: 240, so about 0.023 at F1 0.86), while
    what such a split ranks within that differs by up to 0.09 on the official test split
    (`benchmarks/results/tagger-ensemble-presidio_pii.json`)."""
    n, f1 = dev.get("n_gold"), dev.get("f1")
    if not n or f1 is None:
        return ENSEMBLE_SLACK
    return max(ENSEMBLE_SLACK, math.sqrt(f1 * (1 - f1) / n))


def preferred(items: Sequence[T], score: Callable[[T], float], strategy: Callable[[T], str],
              dev: Callable[[T], dict[str, Any]] = lambda _: {}) -> T | None:
    """The best of ``items`` on dev (the first of a tie), unless an ensemble is within ``ensemble_slack``
    of it (``dev``: an item's dev metrics): then the best such ensemble."""
    top = max(items, key=score, default=None)
    if top is None or strategy(top) == "ensemble":
        return top
    slack = ensemble_slack(dev(top) or {})
    near = [i for i in items if strategy(i) == "ensemble" and score(i) >= score(top) - slack - 1e-12]
    return max(near, key=score) if near else top


def best(nodes: Sequence[GraphNode]) -> GraphNode | None:
    pool = sorted(scored(nodes), key=lambda n: n.order)
    return preferred(pool, lambda n: n.score, lambda n: n.strategy, lambda n: n.dev)


def by_name(nodes: Sequence[GraphNode]) -> dict[str, GraphNode]:
    return {n.name: n for n in nodes}


def is_drop(node: GraphNode, nodes: Sequence[GraphNode], tol: float = 0.0) -> bool:
    """A finished node that scores below its parent (by more than ``tol``)."""
    parent = by_name(nodes).get(node.parent or "")
    return (node.status == "done" and node.strategy != "refit" and parent is not None
            and parent.status == "done" and node.score < parent.score - tol)


def dropped(nodes: Sequence[GraphNode]) -> set[str]:
    return {n.name for n in nodes if is_drop(n, nodes)}


def children(name: str, nodes: Sequence[GraphNode]) -> list[GraphNode]:
    return [n for n in nodes if n.parent == name]


def exploration(c0: float, seconds_left: float, budget: float) -> float:
    """UCT's exploration constant, decaying linearly to 0 as the budget is spent."""
    if budget <= 0:
        return 0.0
    return c0 * max(0.0, min(1.0, seconds_left / budget))


def uct_scores(nodes: Sequence[GraphNode], c: float) -> dict[str, float]:
    """UCT value of every expandable node: normalised score + c·sqrt(ln N / (1 + children)).

    Expandable: finished, not dropped, not an ensemble/refit/threshold. Scores are min-max
    normalised over finished nodes so that ``c`` means the same on every task.
    """
    pool = scored(nodes)
    if not pool:
        return {}
    lo, hi = min(n.score for n in pool), max(n.score for n in pool)
    span = hi - lo or 1.0
    gone = dropped(nodes)
    total = max(1, len([n for n in nodes if n.parent is not None]))
    out = {}
    for n in pool:
        if n.name in gone or n.strategy in UNEXPANDABLE:
            continue
        visits = len(children(n.name, nodes))
        out[n.name] = (n.score - lo) / span + c * math.sqrt(math.log(total + 1) / (1 + visits))
    return out


def select(nodes: Sequence[GraphNode], c: float, allowed: set[str] | None = None) -> str | None:
    """The node to expand next: highest UCT value (ties: the better, then the earlier node)."""
    scores = uct_scores(nodes, c)
    if allowed is not None:
        scores = {k: v for k, v in scores.items() if k in allowed}
    if not scores:
        return None
    nb = by_name(nodes)
    return max(scores, key=lambda k: (scores[k], nb[k].score, -nb[k].order))


def rounds_without_gain(nodes: Sequence[GraphNode], min_gain: float = 0.001) -> int:
    """How many of the latest finished nodes did not beat the best score before them."""
    pool = scored(nodes)
    count, best_so_far = 0, -math.inf
    for n in pool:
        if n.score >= best_so_far + min_gain:
            best_so_far, count = n.score, 0
        else:
            count += 1
    return count


def merge_candidates(nodes: Sequence[GraphNode], base_score: float | None = None,
                     ) -> tuple[GraphNode, GraphNode] | None:
    """The best two branches that gained over the root with different data recipes.

    Their recipes combine (union of operations) into a merged pipeline; None when no two
    improving branches differ in recipe.
    """
    pool = [n for n in scored(nodes) if n.strategy not in UNEXPANDABLE]
    roots = [n for n in pool if n.parent is None]
    floor = base_score if base_score is not None else (roots[0].score if roots else -math.inf)
    gainers = sorted((n for n in pool if n.parent is not None and n.score > floor),
                     key=lambda n: -n.score)
    for i, a in enumerate(gainers):
        for b in gainers[i + 1:]:
            if a.pipeline.get("recipe") != b.pipeline.get("recipe"):
                return a, b
    return None
