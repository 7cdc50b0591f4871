"""Entity spans: the one internal format of the extraction family, and conversions to it.

Extraction data arrives as BIO-style tokens + tags (IOB2, IOB1 and BILOU are read) or as
text + character spans. Internally every example is text + spans ``(start, end, label)``
(end exclusive) — tokenisation-free, so any encoder's subwords can be aligned to it and
predictions come back as character offsets. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from adaptloop.errors import DataError

Span = tuple[int, int, str]

_WORD = re.compile(r"\w+|[^\w\s]")
_TAG = re.compile(r"^(O|([BIELSU])-(.+))$")


def word_units(text: str) -> list[tuple[int, int]]:
    """Character ranges of words and single punctuation marks (the unit spans snap to)."""
    return [(m.start(), m.end()) for m in _WORD.finditer(text)]


def detect_scheme(tags: Sequence[str]) -> str:
    """``IOB`` (IOB1 or IOB2: decoded alike) or ``BILOU``.

    Raises:
        DataError: a tag that fits neither scheme (e.g. ``PER`` without a prefix, or BIOES's ``E-``/``S-``).
    """
    prefixes = set()
    for t in tags:
        m = _TAG.match(t)
        if not m:
            raise DataError(f"tag '{t}' is not O or PREFIX-TYPE; use IOB2 (B-/I-), IOB1 or BILOU tags")
        if m.group(2):
            prefixes.add(m.group(2))
    if prefixes & {"E", "S"}:
        raise DataError(f"tags with prefixes {sorted(prefixes & {'E', 'S'})} (BIOES) are not read; "
                        "convert them to BILOU (E→L, S→U) or IOB2")
    return "BILOU" if prefixes & {"L", "U"} else "IOB"


def tags_to_spans(tokens: Sequence[str], tags: Sequence[str]) -> tuple[str, list[Span]]:
    """Tokens joined by single spaces, and the entity spans their tags mark.

    IOB1 and IOB2 decode alike: ``B-X`` starts an entity, ``I-X`` continues one of type X
    or starts a new one. BILOU: ``U-X`` is a one-token entity, ``L-X`` ends one.

    Raises:
        DataError: tokens and tags differ in length, or a tag fits no scheme.
    """
    if len(tokens) != len(tags):
        raise DataError(f"{len(tokens)} tokens but {len(tags)} tags; every token needs exactly one tag")
    scheme = detect_scheme(tags)
    offsets, pos = [], 0
    for tok in tokens:
        offsets.append((pos, pos + len(tok)))
        pos += len(tok) + 1
    text = " ".join(tokens)
    spans: list[Span] = []
    open_: list[int] | None = None  # [start, end, index of type]
    open_type = ""

    def close() -> None:
        nonlocal open_
        if open_ is not None:
            spans.append((open_[0], open_[1], open_type))
        open_ = None

    for (s, e), tag in zip(offsets, tags):
        if tag == "O":
            close()
            continue
        prefix, typ = tag[0], tag[2:]
        if prefix in "BU" or open_ is None or typ != open_type:
            close()
            open_, open_type = [s, e, 0], typ
        else:
            open_[1] = e
        if prefix in "LU" and scheme == "BILOU":
            close()
    close()
    return text, [sp for sp in spans if text[sp[0]:sp[1]].strip()]


def cut_units(text: str, spans: Sequence[Span]) -> list[tuple[int, int]]:
    """Word units of ``text``, split further at every span boundary."""
    cuts = sorted({p for s, e, _ in spans for p in (s, e)})
    units: list[tuple[int, int]] = []
    for ws, we in word_units(text):
        inner = [c for c in cuts if ws < c < we]
        edges = [ws, *inner, we]
        units += list(zip(edges, edges[1:]))
    return units


def spans_to_tags(text: str, spans: Sequence[Span], also: Sequence[Span] = ()) -> tuple[list[str], list[str]]:
    """Word units of ``text`` (split at every boundary of ``spans`` and ``also``) with IOB2 tags.

    Cutting at both the gold and the predicted boundaries makes seqeval's entity match an
    exact character-span match.
    """
    units = cut_units(text, [*spans, *also])
    ordered = sorted(spans)
    tokens, tags = [], []
    prev = None
    for us, ue in units:
        tokens.append(text[us:ue])
        hit = next((sp for sp in ordered if sp[0] <= us < sp[1]), None)
        tags.append("O" if hit is None else ("I-" if hit == prev else "B-") + hit[2])
        prev = hit
    return tokens, tags


def check_spans(text: str, spans: Sequence[object]) -> tuple[list[Span], str]:
    """Validated, sorted spans, or ``([], reason)`` saying what is wrong.

    A span is ``{"start", "end", "label"}`` (or a 3-item list); ends are exclusive; spans
    must lie inside the text, be non-empty and not overlap. Surrounding whitespace inside a
    span is trimmed.
    """
    out: list[Span] = []
    for i, sp in enumerate(spans):
        if isinstance(sp, dict):
            s, e, lab = sp.get("start"), sp.get("end"), sp.get("label")
        elif isinstance(sp, (list, tuple)) and len(sp) == 3:
            s, e, lab = sp
        else:
            return [], f"span {i} is not {{start, end, label}}"
        if not isinstance(s, int) or not isinstance(e, int) or isinstance(s, bool) or isinstance(e, bool):
            return [], f"span {i} has non-integer offsets"
        if not isinstance(lab, str) or not lab.strip():
            return [], f"span {i} has no label"
        if not 0 <= s < e <= len(text):
            return [], f"span {i} ({s}, {e}) is out of range for a text of {len(text)} characters"
        chunk = text[s:e]
        s, e = s + len(chunk) - len(chunk.lstrip()), e - (len(chunk) - len(chunk.rstrip()))
        if s >= e:
            return [], f"span {i} covers only whitespace"
        out.append((s, e, lab.strip()))
    out.sort()
    for a, b in zip(out, out[1:]):
        if b[0] < a[1]:
            return [], f"spans ({a[0]}, {a[1]}, {a[2]}) and ({b[0]}, {b[1]}, {b[2]}) overlap"
    return out, ""


def snap(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen ``[start, end)`` to whole word units (a subword prediction covers its word)."""
    for ws, we in word_units(text):
        if ws < start < we:
            start = ws
        if ws < end < we:
            end = we
    chunk = text[start:end]
    return start + len(chunk) - len(chunk.lstrip()), end - (len(chunk) - len(chunk.rstrip()))


def entity_types(examples_spans: Sequence[Sequence[Span]]) -> list[str]:
    return sorted({sp[2] for spans in examples_spans for sp in spans})


def strat_key(spans: Sequence[Span]) -> str:
    """A label to stratify splits by: the example's most frequent entity type, or ``O``."""
    if not spans:
        return "O"
    counts: dict[str, int] = {}
    for _s, _e, lab in spans:
        counts[lab] = counts.get(lab, 0) + 1
    return min(counts, key=lambda k: (-counts[k], k))


_CLAUSE = re.compile(r"[^.!?;:\n]+[.!?;:]?")


def mine_negatives(examples: Sequence, *, min_words: int = 3, share: float = 0.25, seed: int = 0) -> list:
    """Entity-free sentences cut from the training text itself (precision-first data).

    The clauses of annotated examples that overlap no entity are real text the model must
    leave alone; each becomes an example with no spans. At most ``share`` × len(examples)
    are added, picked by a seeded hash so the recipe is deterministic.
    """
    import hashlib

    from adaptloop.types import Example

    found: dict[str, Example] = {}
    for e in examples:
        if not e.spans:
            continue
        for m in _CLAUSE.finditer(e.text):
            s, t = m.start(), m.end()
            if any(sp[0] < t and s < sp[1] for sp in e.spans):
                continue
            clause = m.group().strip()
            if len(word_units(clause)) >= min_words and clause not in found:
                found[clause] = Example(text=clause, label="O", source=f"{e.source}#negative")
    ranked = sorted(found.values(), key=lambda x: hashlib.sha256(f"{seed}:{x.id}".encode()).hexdigest())
    return ranked[: max(1, int(share * len(examples)))]


def diversify(examples: Sequence, *, seed: int = 0) -> list:
    """One variant of every annotated example with each entity swapped for another mention of its type.

    Surface forms are drawn from the training set's own mentions of the same type, so the
    model sees each context with new names, addresses and numbers (entity diversification).
    """
    import random

    from adaptloop.types import Example

    rng = random.Random(seed)
    forms: dict[str, list[str]] = {}
    for e in examples:
        for s, t, lab in e.spans:
            forms.setdefault(lab, []).append(e.text[s:t])
    out = []
    for e in examples:
        if not e.spans:
            continue
        text, spans, pos = "", [], 0
        for s, t, lab in sorted(e.spans):
            value = rng.choice(forms[lab])
            text += e.text[pos:s]
            spans.append((len(text), len(text) + len(value), lab))
            text += value
            pos = t
        text += e.text[pos:]
        if text != e.text:
            out.append(Example(text=text, label=e.label, spans=tuple(spans), source=f"{e.source}#diversified"))
    return out


def locate(text: str, entities: Sequence[tuple[str, str]]) -> list[tuple[int, int, str]] | None:
    """Character spans for ``(entity text, label)`` pairs an LLM named, each at its first occurrence not
    already taken, sorted; None when one of them is not in ``text`` (the answer cannot be trusted)."""
    spans: list[tuple[int, int, str]] = []
    for value, label in entities:
        if not value:
            continue
        start = text.find(value)
        while start >= 0 and any(s < start + len(value) and start < e for s, e, _ in spans):
            start = text.find(value, start + 1)
        if start < 0:
            return None
        spans.append((start, start + len(value), label))
    return sorted(spans)
