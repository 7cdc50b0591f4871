"""Deterministic, stratified splits: a function of content and seed, never of file order."""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Sequence

from adaptloop.types import Example


def _rank(example: Example, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{example.id}".encode()).hexdigest()


def stratified_split(
    examples: Sequence[Example], *, fraction: float, seed: int, max_n: int | None = None,
    min_per_class: int = 1,
) -> tuple[list[Example], list[Example]]:
    """Split into (held, rest), taking ``fraction`` of every class.

    Within a class, examples are ordered by the hash of (seed, id), so the split depends
    only on content. A class with fewer than ``min_per_class + 1`` examples stays in
    ``rest`` whole, so training always sees every class.

    Args:
        examples: the pool.
        fraction: share of each class to hold out, in (0, 1).
        seed: changes the split deterministically.
        max_n: cap on the held part; the fraction shrinks to fit.
        min_per_class: held examples per class at least (when the class is big enough).

    Returns:
        (held, rest), each sorted by id.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    by_class: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        by_class[e.label].append(e)
    if max_n is not None and fraction * len(examples) > max_n:
        fraction = max_n / len(examples)
    held: list[Example] = []
    rest: list[Example] = []
    for label in sorted(by_class):
        group = sorted(by_class[label], key=lambda e: _rank(e, seed))
        if len(group) <= min_per_class:
            rest.extend(group)
            continue
        k = min(len(group) - 1, max(min_per_class, math.floor(fraction * len(group) + 0.5)))
        held.extend(group[:k])
        rest.extend(group[k:])
    return sorted(held, key=lambda e: e.id), sorted(rest, key=lambda e: e.id)
