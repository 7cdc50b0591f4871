"""Data recipes as small compositions over the training split.

A recipe is a set of operations on the raw (deduplicated, decontaminated) training split,
written ``op+op`` in sorted order, so two branches' recipes merge by union:

- ``raw``: no operation (large and possibly noisy);
- ``clean``: drop the examples cleanlab flagged (smaller and cleaner);
- ``augment``: add one typo, casing or truncation variant of every example (classification);
- ``negatives``: add entity-free clauses cut from the training text (extraction);
- ``diversify``: add a variant of every annotated example with its entities swapped for
  other mentions of the same type (extraction).

``curated`` and ``augmented`` are the names runs before recipes composed used; they still
resolve. ``train+dev`` is the refit recipe. Materialised lists are cached per recipe.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from adaptloop.data.augment import augment
from adaptloop.types import Example

OPS = ("clean", "augment", "negatives", "diversify")
EXTRACTION_ONLY = frozenset({"negatives", "diversify"})
ALIASES = {"curated": "clean", "augmented": "augment"}


def parse(recipe: str) -> frozenset[str]:
    """The set of operations in ``recipe``.

    Raises:
        ValueError: an unknown operation.
    """
    if recipe == "raw":
        return frozenset()
    ops = frozenset(ALIASES.get(op, op) for op in recipe.split("+"))
    unknown = ops - set(OPS)
    if unknown:
        raise ValueError(f"unknown data recipe operation(s) {sorted(unknown)}; use raw, "
                         + ", ".join(OPS) + " joined by '+'")
    return ops


def name(ops: Iterable[str]) -> str:
    ops = sorted(set(ops))
    return "+".join(ops) if ops else "raw"


def merge(*recipes: str) -> str:
    """The union of the recipes' operations (the merge move of the search)."""
    return name(set().union(*(parse(r) for r in recipes)))


class RecipeBook:
    """Materialises recipes on demand: ``book["clean+augment"]`` is a list of examples.

    Args:
        raw: the training split.
        dev: the dev split (``book["dev"]``).
        issue_ids: ids of the examples ``clean`` drops.
        seed: augmentation seed.
    """

    def __init__(self, raw: Sequence[Example], dev: Sequence[Example], issue_ids: Iterable[str],
                 seed: int = 0, family: str = "classification") -> None:
        self.raw, self.dev = list(raw), list(dev)
        self.family = family
        self.issue_ids = frozenset(issue_ids)
        self.seed = seed
        self._cache: dict[str, list[Example]] = {}

    def __getitem__(self, recipe: str) -> list[Example]:
        if recipe == "dev":
            return self.dev
        if recipe not in self._cache:
            self._cache[recipe] = self._build(recipe)
        return self._cache[recipe]

    def _build(self, recipe: str) -> list[Example]:
        if recipe.endswith("+dev") and recipe != "+dev":
            return self[recipe[: -len("+dev")].replace("train", "raw")] + self.dev
        ops = parse(recipe)
        wrong = ops & EXTRACTION_ONLY if self.family != "extraction" else ops & {"augment"}
        if wrong:
            raise ValueError(f"recipe operation(s) {sorted(wrong)} do not apply to {self.family}")
        out = [e for e in self.raw if e.id not in self.issue_ids] if "clean" in ops else list(self.raw)
        if "augment" in ops:
            out = augment(out, seed=self.seed)
        if ops & EXTRACTION_ONLY:
            from adaptloop.data.spans import diversify, mine_negatives

            extra = mine_negatives(out, seed=self.seed) if "negatives" in ops else []
            extra += diversify(out, seed=self.seed) if "diversify" in ops else []
            out = out + extra
        return out
