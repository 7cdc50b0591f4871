"""Failure taxonomy: clusters of fixable failures, each named by its dominant pattern.

Embedding clusters (k-means on the failures' embeddings) give the groups; each is named by
what most of its members share — a surface pattern ("typo'd inputs", "truncated inputs",
"odd casing") when at least half have it, otherwise its top confusion ("card_arrival ↔
card_delivery_estimate"). Clusters with the same name merge. Largest first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

PATTERN_NAMES = {"typo": "typo'd inputs", "truncated": "truncated inputs", "casing": "odd casing"}


@dataclass(frozen=True)
class Failure:
    id: str
    text: str
    pred: str
    label: str
    pattern: str  # triage's fix pattern: typo | truncated | casing | confusable | paraphrase


@dataclass(frozen=True)
class Cluster:
    name: str
    kind: str  # pattern | confusion
    count: int
    pairs: list[tuple[str, str, int]]  # (predicted, corrected, count), most common first
    examples: list[dict[str, str]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("ids")
        return d


def pair_name(a: str, b: str) -> str:
    x, y = sorted((a, b))
    return f"{x} ↔ {y}"


def _name(members: Sequence[Failure]) -> tuple[str, str]:
    patterns = Counter(f.pattern for f in members if f.pattern in PATTERN_NAMES)
    if patterns:
        p, n = patterns.most_common(1)[0]
        if n >= 0.5 * len(members):
            return PATTERN_NAMES[p], "pattern"
    pairs = Counter(pair_name(f.pred, f.label) for f in members)
    return pairs.most_common(1)[0][0], "confusion"


def taxonomy(failures: Sequence[Failure], x: np.ndarray, *, seed: int = 0, max_clusters: int = 30,
             per_cluster: int = 25, n_examples: int = 3) -> list[Cluster]:
    """Named clusters of ``failures`` (``x``: their embeddings, one row each)."""
    if not failures:
        return []
    from sklearn.cluster import KMeans

    k = int(min(max_clusters, max(1, len(failures) // per_cluster)))
    assign = (np.zeros(len(failures), dtype=int) if k == 1 else
              KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(x))
    named: dict[tuple[str, str], list[Failure]] = {}
    for c in range(k):
        members = [f for f, a in zip(failures, assign) if a == c]
        if members:
            named.setdefault(_name(members), []).extend(members)
    # a confusion spread over several embedding clusters is still one confusion
    out = []
    for (name, kind), members in named.items():
        pairs = Counter((f.pred, f.label) for f in members).most_common(5)
        out.append(Cluster(name=name, kind=kind, count=len(members),
                           pairs=[(a, b, n) for (a, b), n in pairs],
                           examples=[{"text": f.text, "pred": f.pred, "label": f.label}
                                     for f in members[:n_examples]],
                           ids=[f.id for f in members]))
    return sorted(out, key=lambda c: (-c.count, c.name))
