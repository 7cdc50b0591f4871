"""The experiment graph of a view, shared by the HTML page and the terminal tree: scores, labels, the forest,
and the axis ticks of its charts."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

__all__ = ["forest", "is_number", "node_label", "node_score", "short_encoder", "ticks"]


def is_number(x: Any) -> bool:
    """A finite int or float (a bool is not a number here)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def node_score(node: Mapping[str, Any], metric: str = "accuracy", split: str = "dev") -> float | None:
    """The node's ``metric`` on ``split`` (``"dev"`` or ``"eval"``), else its accuracy; None when unscored."""
    scores = node.get(split) or {}
    for key in (metric, "accuracy"):
        if is_number(scores.get(key)):
            return float(scores[key])
    return None


def node_label(node: Mapping[str, Any]) -> str:
    """The node's name, or ``node <id>`` when it has none."""
    name = node.get("name")
    return str(name) if name not in (None, "") else f"node {node.get('id')}"


def short_encoder(name: Any) -> str:
    """``sentence-transformers/all-MiniLM-L6-v2`` -> ``all-MiniLM-L6-v2`` (directories of a path go too)."""
    return str(name or "").rstrip("/").rsplit("/", 1)[-1]


def forest(nodes: Sequence[Mapping[str, Any]]) -> tuple[list[Hashable], dict[Hashable, list[Hashable]]]:
    """The experiment graph as roots and ordered children lists; every node appears exactly once.

    A node whose parent is absent from ``nodes`` is a root; so is the first node met on a parent cycle,
    so a damaged view still renders instead of looping.

    Returns:
        ``(root ids, {id: [child ids in node order]})``.
    """
    ids = [n.get("id") for n in nodes]
    known = set(ids)
    children: dict[Hashable, list[Hashable]] = {i: [] for i in ids}
    roots: list[Hashable] = []
    for n in nodes:
        pid = n.get("parent_id")
        if pid is not None and pid in known and pid != n.get("id"):
            children[pid].append(n.get("id"))
        else:
            roots.append(n.get("id"))
    reached: set[Hashable] = set()

    def reach(start: Hashable) -> None:
        stack = [start]
        while stack:
            i = stack.pop()
            if i not in reached:
                reached.add(i)
                stack.extend(children.get(i, ()))

    for r in roots:
        reach(r)
    for i in ids:
        if i not in reached:  # on a cycle: cut the link into it
            for kids in children.values():
                if i in kids:
                    kids.remove(i)
            roots.append(i)
            reach(i)
    return roots, children


def ticks(lo: float, hi: float, n: int = 5) -> tuple[list[float], float, float, int]:
    """Round tick values covering [lo, hi]: ``(ticks, axis_lo, axis_hi, decimals)``."""
    if not hi > lo:
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw * (1 - 1e-9))
    lo2, hi2 = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    marks = [lo2 + i * step for i in range(round((hi2 - lo2) / step) + 1)]
    return marks, lo2, hi2, max(0, -math.floor(math.log10(step)))
