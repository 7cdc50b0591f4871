"""Label-preserving text augmentation: deterministic typos, casing and truncation variants.

Every variant is a new ``Example`` whose ``source`` names the transform and the original id,
so a model's lineage shows which training rows were synthetic.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from adaptloop.types import Example


def _rng(example: Example, seed: int, kind: str) -> random.Random:
    h = hashlib.sha256(f"{seed}:{kind}:{example.id}".encode()).hexdigest()
    return random.Random(int(h[:16], 16))


def typo(text: str, rng: random.Random, n: int = 1) -> str:
    """Swap, drop or double one letter ``n`` times (never in words of < 3 letters)."""
    chars = list(text)
    for _ in range(n):
        spots = [i for i in range(1, len(chars) - 1) if chars[i].isalpha() and chars[i + 1].isalpha()]
        if not spots:
            break
        i = rng.choice(spots)
        op = rng.randrange(3)
        if op == 0:
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif op == 1:
            del chars[i]
        else:
            chars.insert(i, chars[i])
    return "".join(chars)


def truncate(text: str, keep: float = 0.7) -> str:
    """The first ``keep`` share of the words (at least three)."""
    words = text.split()
    return " ".join(words[: max(3, int(len(words) * keep + 0.5))])


def augment(examples: Sequence[Example], *, seed: int, per_example: int = 1) -> list[Example]:
    """The originals followed by ``per_example`` variants of each (typo, lower-case, truncation).

    Variants equal to their original are skipped.
    """
    out = list(examples)
    kinds = ("typo", "lower", "truncate")
    for e in examples:
        rng = _rng(e, seed, "augment")
        for k in range(per_example):
            kind = kinds[(rng.randrange(3) + k) % 3]
            if kind == "typo":
                text = typo(e.text, rng)
            elif kind == "lower":
                text = e.text.lower().rstrip("?.!")
            else:
                text = truncate(e.text)
            if text and text != e.text:
                out.append(Example(text=text, label=e.label, source=f"augment:{kind}:{e.id}",
                                   weight=e.weight))
    return out
