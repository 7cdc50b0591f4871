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


def probes(texts: Sequence[str], *, seed: int, n: int) -> list[str]:
    """``n`` unlabelled texts near ``texts`` for a teacher to label and a student to learn from.

    A student trained only on its teacher's training texts sees the teacher's near one-hot
    answers there (the teacher fit them) and learns little of how the teacher decides between
    classes. Texts it never trained on carry that: its second choices, its doubt. Three kinds,
    in turns (Tang et al. 2019, distilling BERT into small networks, use masking and n-gram
    samples the same way):

    - **dropout**: each word left out with probability 0.15 (the gist with its cues thinned);
    - **crop**: a contiguous run of 40–80% of the words (a partial request);
    - **splice**: the first half of one text and the second half of another (two requests in
      one: the teacher's answer between two classes).

    No label is implied: what a probe is, the teacher says. Deterministic for a seed; texts of
    fewer than three words and probes equal to a text are skipped.
    """
    rng = random.Random(seed)
    pool = [t.split() for t in texts if len(t.split()) >= 3]
    if not pool:
        return []
    out: list[str] = []
    seen = set(texts)
    for k in range(n * 2):  # some probes repeat a text or each other: draw more than asked
        if len(out) >= n:
            break
        words = pool[rng.randrange(len(pool))]
        kind = k % 3
        if kind == 0:
            kept = [w for w in words if rng.random() >= 0.15]
            probe = kept if len(kept) >= 2 else words[:2]
        elif kind == 1:
            size = max(2, round(len(words) * rng.uniform(0.4, 0.8)))
            start = rng.randrange(len(words) - size + 1)
            probe = words[start:start + size]
        else:
            other = pool[rng.randrange(len(pool))]
            probe = words[: len(words) // 2] + other[len(other) // 2:]
        text = " ".join(probe)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out
