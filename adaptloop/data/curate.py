"""Curation as pure functions over examples: duplicates, contamination, label issues, balance.

Verbs follow cleanlab's: ``find_*`` returns the indices to drop with a reason each;
``class_balance`` reports. Nothing here mutates its input or touches storage.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from datasketch import MinHash, MinHashLSH

from adaptloop.types import Example

NUM_PERM = 64  # MinHash permutations: ±0.06 error on Jaccard, fast on 10k short texts
SHINGLE = 4  # character shingle size; short utterances need character-level overlap


@dataclass(frozen=True)
class Drop:
    """One example to remove, and why."""

    index: int
    reason: str  # exact_duplicate | near_duplicate | conflicting_duplicate | eval_overlap | label_issue
    detail: str = ""


def normalize_text(text: str) -> str:
    """Lowercase, NFKC, punctuation to spaces, whitespace collapsed."""
    t = unicodedata.normalize("NFKC", text).lower()
    t = re.sub(r"[^\w\s]", " ", t)
    return " ".join(t.split())


def find_exact_duplicates(examples: Sequence[Example]) -> list[Drop]:
    """Repeated normalised texts: keep the first of each; if labels disagree, drop them all.

    Returns:
        Drops sorted by index.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(examples):
        groups[normalize_text(e.text)].append(i)
    drops: list[Drop] = []
    for idx in groups.values():
        if len(idx) < 2:
            continue
        labels = {examples[i].label for i in idx}
        if len(labels) > 1:
            detail = "labels " + ", ".join(sorted(labels))
            drops.extend(Drop(i, "conflicting_duplicate", detail) for i in idx)
        else:
            drops.extend(Drop(i, "exact_duplicate", f"same text as {examples[idx[0]].id}")
                         for i in idx[1:])
    return sorted(drops, key=lambda d: d.index)


@lru_cache(maxsize=1)
def _seeded() -> MinHash:
    """The MinHash whose permutations every text's reuses: drawing them per text took 3/4 of its time."""
    return MinHash(num_perm=NUM_PERM, seed=1)


def _minhash(text: str) -> MinHash:
    t = normalize_text(text)
    t = f" {t} "
    shingles = {t[i:i + SHINGLE] for i in range(max(1, len(t) - SHINGLE + 1))}
    seeded = _seeded()
    m = MinHash(num_perm=NUM_PERM, seed=1, permutations=seeded.permutations, scheme=seeded.scheme)
    m.update_batch([s.encode("utf-8") for s in shingles])
    return m


def find_near_duplicates(examples: Sequence[Example], *, threshold: float = 0.9) -> list[Drop]:
    """Pairs above ``threshold`` estimated Jaccard (char shingles); keep the earlier one.

    Near duplicates with different labels are left alone here: they are what label-issue
    detection is for.
    """
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    drops: list[Drop] = []
    for i, e in enumerate(examples):
        m = _minhash(e.text)
        hits = [int(k) for k in lsh.query(m)]
        same = [j for j in hits if examples[j].label == e.label]
        if same:
            drops.append(Drop(i, "near_duplicate", f"near {examples[min(same)].id}"))
            continue
        lsh.insert(str(i), m)
    return drops


def find_eval_overlap(pool: Sequence[Example], eval_examples: Sequence[Example], *,
                      threshold: float = 0.8) -> list[Drop]:
    """Pool examples that equal or nearly equal an eval example (decontamination).

    The eval set is frozen, so the pool side is the one dropped.
    """
    exact = {normalize_text(e.text): e.id for e in eval_examples}
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    for j, e in enumerate(eval_examples):
        lsh.insert(str(j), _minhash(e.text))
    drops: list[Drop] = []
    for i, e in enumerate(pool):
        key = normalize_text(e.text)
        if key in exact:
            drops.append(Drop(i, "eval_overlap", f"exact copy of eval {exact[key]}"))
            continue
        hits = lsh.query(_minhash(e.text))
        if hits:
            drops.append(Drop(i, "eval_overlap", f"near eval {eval_examples[int(hits[0])].id}"))
    return drops


def find_label_issues(labels: np.ndarray, pred_probs: np.ndarray, *,
                      max_fraction: float = 0.05) -> list[Drop]:
    """Likely mislabelled examples, by cleanlab's confident learning.

    Args:
        labels: shape (n,), integer class ids.
        pred_probs: shape (n, k), OUT-OF-FOLD probabilities; in-sample probabilities hide
            exactly the errors this looks for.
        max_fraction: never drop more than this share of the pool (worst first).

    Returns:
        Drops ordered by cleanlab's label-quality rank (worst first).
    """
    from cleanlab.filter import find_label_issues as _cl_find

    # n_jobs=1: cleanlab forks a Pool otherwise, and a fork of a process that holds torch's or
    # tqdm's threads can hang on a lock no child will release (seen once in CI: 20 minutes stuck).
    ranked = _cl_find(labels, pred_probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    ranked = list(ranked)[: int(max_fraction * len(labels))]
    drops = []
    for i in ranked:
        p = pred_probs[i]
        drops.append(Drop(int(i), "label_issue",
                          f"p(given)={p[labels[i]]:.2f}, p(best)={p.max():.2f} for class {int(p.argmax())}"))
    return drops


def class_balance(examples: Sequence[Example]) -> dict:
    """Counts per class, imbalance ratio, and classes too small to learn or split."""
    counts = Counter(e.label for e in examples)
    lo, hi = min(counts.values()), max(counts.values())
    return {
        "counts": dict(sorted(counts.items())),
        "n_classes": len(counts),
        "min": lo,
        "max": hi,
        "imbalance_ratio": round(hi / lo, 2),
        "small_classes": sorted(k for k, v in counts.items() if v < 5),
    }


def first_of_each_id(examples: Sequence[Example]) -> list[Example]:
    """The first example of each id, in order."""
    seen: dict[str, Example] = {}
    for e in examples:
        seen.setdefault(e.id, e)
    return list(seen.values())


def apply_drops(examples: Sequence[Example], drops: Sequence[Drop]) -> list[Example]:
    """The examples whose indices are not dropped (new list; input untouched)."""
    gone = {d.index for d in drops}
    return [e for i, e in enumerate(examples) if i not in gone]
