"""Read labelled examples from JSON Lines, quarantining what cannot be used.

A file fails as a whole (``DataError``) when it cannot be read at all: missing, empty, not
UTF-8, or without a single usable record. A single bad line is quarantined with its reason
and loading goes on; the caller stores the quarantine so nothing is lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from adaptloop.errors import DataError
from adaptloop.types import Example

TEXT_FIELDS = ("text", "sentence", "utterance", "input")
LABEL_FIELDS = ("label", "intent", "category")


@dataclass(frozen=True)
class Quarantined:
    line_no: int
    raw: str
    reason: str


@dataclass(frozen=True)
class Loaded:
    """Examples read from one file, and the lines that were set aside."""

    examples: tuple[Example, ...]
    quarantined: tuple[Quarantined, ...] = field(default_factory=tuple)
    source: str = ""


def read_text(path: str | Path) -> str:
    """The file's text, or a one-line ``DataError`` saying what is wrong with it."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file {p} does not exist; check the path")
    if p.is_dir():
        raise DataError(f"{p} is a folder; pass a .jsonl file")
    raw = p.read_bytes()
    if not raw.strip():
        raise DataError(f"data file {p} is empty; it needs one JSON object per line")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{p} is not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            f"re-encode it, e.g. `iconv -f latin1 -t utf-8 {p.name} > fixed.jsonl`"
        ) from None


def _pick(obj: dict, names: tuple[str, ...]) -> object | None:
    for n in names:
        if n in obj:
            return obj[n]
    return None


def load_classification(path: str | Path) -> Loaded:
    """Load ``{"text", "label"}`` records (a few common aliases are accepted).

    Raises:
        DataError: the file is unusable as a whole.
    """
    p = Path(path)
    text = read_text(p)
    examples: list[Example] = []
    bad: list[Quarantined] = []
    seen_keys: set[str] = set()
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(Quarantined(i, line, f"not valid JSON: {exc.msg}"))
            continue
        if not isinstance(obj, dict):
            bad.append(Quarantined(i, line, "not a JSON object"))
            continue
        seen_keys.update(obj)
        t, lab = _pick(obj, TEXT_FIELDS), _pick(obj, LABEL_FIELDS)
        if not isinstance(t, str) or not t.strip():
            bad.append(Quarantined(i, line, "missing or empty 'text'"))
            continue
        if isinstance(lab, (int, float)) and not isinstance(lab, bool):
            lab = str(lab)
        if not isinstance(lab, str) or not lab.strip():
            bad.append(Quarantined(i, line, "missing or empty 'label'"))
            continue
        examples.append(Example(text=t.strip(), label=lab.strip(), source=f"{p.name}:{i}"))
    if not examples:
        fields = ", ".join(sorted(seen_keys)) or "none"
        first = bad[0].reason if bad else "no records"
        raise DataError(
            f"no usable records in {p} ({len(bad)} lines rejected, first: {first}; fields seen: "
            f"{fields}); each line must be {{\"text\": ..., \"label\": ...}}"
        )
    return Loaded(tuple(examples), tuple(bad), str(p))
