"""Read labelled examples from JSON Lines, quarantining what cannot be used.

A file fails as a whole (``DataError``) when it cannot be read at all: missing, empty, not
UTF-8, or without a single usable record. A single bad line is quarantined with its reason
and loading goes on; the caller stores the quarantine so nothing is lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from adaptloop.data.spec import choose_family
from adaptloop.errors import DataError
from adaptloop.types import Example

TEXT_FIELDS = ("text", "sentence", "utterance", "input")
LABEL_FIELDS = ("label", "intent", "category")
GROUP_FIELDS = ("group", "group_id", "template_id", "doc_id", "conversation_id")


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
    family: str = "classification"
    definitions: dict[str, str] = field(default_factory=dict)  # drafted tasks: what each label covers
    edge_cases: tuple[str, ...] = ()


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
        return raw.decode("utf-8-sig")  # a byte-order mark (Windows editors write one) is not data
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


def _group(obj: dict) -> str:
    """The record's group key (``GROUP_FIELDS``), as text; "" when it has none."""
    g = _pick(obj, GROUP_FIELDS)
    return "" if g is None or isinstance(g, (dict, list)) else str(g)


def load_classification(path: str | Path) -> Loaded:
    """Load ``{"text", "label"}`` records (a few common aliases are accepted).

    Raises:
        DataError: the file is unusable as a whole.
    """
    p = Path(path)
    good, bad, seen_keys = _records(p)
    examples: list[Example] = []
    for i, line, obj in good:
        t, lab = _pick(obj, TEXT_FIELDS), _pick(obj, LABEL_FIELDS)
        if not isinstance(t, str) or not t.strip():
            bad.append(Quarantined(i, line, "missing or empty 'text'"))
            continue
        if isinstance(lab, (int, float)) and not isinstance(lab, bool):
            lab = str(lab)
        if not isinstance(lab, str) or not lab.strip():
            bad.append(Quarantined(i, line, "missing or empty 'label'"))
            continue
        examples.append(Example(text=t.strip(), label=lab.strip(), source=f"{p.name}:{i}", group=_group(obj)))
    if not examples:
        fields = ", ".join(sorted(seen_keys)) or "none"
        first = bad[0].reason if bad else "no records"
        raise DataError(
            f"no usable records in {p} ({len(bad)} lines rejected, first: {first}; fields seen: "
            f"{fields}); each line must be {{\"text\": ..., \"label\": ...}}"
        )
    return Loaded(tuple(examples), tuple(sorted(bad, key=lambda q: q.line_no)), str(p))


def _records(p: Path) -> tuple[list[tuple[int, str, dict]], list[Quarantined], set[str]]:
    """(line number, raw line, object) for every JSON-object line; the rest quarantined."""
    good, bad, keys = [], [], set()
    # JSON Lines end at "\n" only: str.splitlines() would also cut at U+2028, U+0085 and other
    # separators that JSON allows raw inside strings (gsm8k's train has one)
    for i, line in enumerate(read_text(p).split("\n"), start=1):
        line = line.removesuffix("\r")
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
        keys.update(obj)
        good.append((i, line, obj))
    return good, bad, keys


def data_families(path: str | Path, peek: int = 200) -> set[str]:
    """Which task families the file's records can feed (``classification``, ``extraction``,
    ``generation``)."""
    from adaptloop.data.generation import PROMPT_FIELDS, TARGET_FIELDS

    good, _bad, _keys = _records(Path(path))
    out: set[str] = set()
    free_targets = tuple(f for f in TARGET_FIELDS if f not in LABEL_FIELDS)
    for _i, _line, obj in good[:peek]:
        if ("tokens" in obj and "tags" in obj) or "spans" in obj or "entities" in obj:
            out.add("extraction")
        if _pick(obj, LABEL_FIELDS) is not None and _pick(obj, TEXT_FIELDS) is not None:
            out.add("classification")
        if "messages" in obj or (_pick(obj, PROMPT_FIELDS) is not None and _pick(obj, free_targets) is not None):
            out.add("generation")
    return out


def load_extraction(path: str | Path) -> Loaded:
    """Load entity data: ``{"text", "spans": [{start, end, label}]}`` or ``{"tokens", "tags"}``.

    When a record has both, the text and its character spans win (they keep the original
    spacing). Tags may be IOB2, IOB1 or BILOU. Each example keeps its spans; its ``label`` is
    the stratification key (most frequent entity type, ``O`` when entity-free).

    Raises:
        DataError: the file is unusable as a whole.
    """
    from adaptloop.data.spans import check_spans, strat_key, tags_to_spans

    p = Path(path)
    good, bad, keys = _records(p)
    examples: list[Example] = []
    for i, line, obj in good:
        raw_spans = obj.get("spans", obj.get("entities"))
        text = _pick(obj, TEXT_FIELDS)
        try:
            if raw_spans is not None:
                if not isinstance(text, str) or not text.strip():
                    raise DataError("has spans but no 'text'")
                if not isinstance(raw_spans, list):
                    raise DataError("'spans' is not a list")
                spans, reason = check_spans(text, raw_spans)
                if reason:
                    raise DataError(reason)
            elif "tokens" in obj and "tags" in obj:
                toks, tags = obj["tokens"], obj["tags"]
                if not (isinstance(toks, list) and isinstance(tags, list)
                        and all(isinstance(t, str) for t in toks + tags)):
                    raise DataError("'tokens' and 'tags' must be lists of strings")
                if not toks:
                    raise DataError("no tokens")
                text, spans = tags_to_spans(toks, tags)
            else:
                raise DataError("missing 'text' + 'spans' or 'tokens' + 'tags'")
        except DataError as exc:
            bad.append(Quarantined(i, line, str(exc)))
            continue
        examples.append(Example(text=text, label=strat_key(spans), spans=tuple(spans), source=f"{p.name}:{i}",
                                group=_group(obj)))
    if not examples:
        first = bad[0].reason if bad else "no records"
        raise DataError(
            f"no usable entity records in {p} ({len(bad)} lines rejected, first: {first}; fields seen: "
            f"{', '.join(sorted(keys)) or 'none'}); each line must be {{\"text\", \"spans\": [{{\"start\", "
            "\"end\", \"label\"}]} or {\"tokens\", \"tags\"}"
        )
    return Loaded(tuple(examples), tuple(sorted(bad, key=lambda q: q.line_no)), str(p), family="extraction")


def family_for(path: str | Path, prompt: str = "") -> str:
    """The task family the prompt and the file's records decide.

    Raises:
        DataError: the file is unusable, or the prompt asks for what the data cannot feed.
    """
    families = data_families(path)
    if not families:
        _good, _bad, keys = _records(Path(path))
        raise DataError(f"{path} has neither {{\"text\", \"label\"}} records (classification), "
                        f"{{\"text\", \"spans\"}} / {{\"tokens\", \"tags\"}} records (extraction) nor "
                        f"{{\"prompt\", \"answer\"}} / chat \"messages\" records (generation); "
                        f"fields seen: {', '.join(sorted(keys)) or 'none'}")
    return choose_family(prompt, families, source=str(path))


def load_for(path: str | Path, prompt: str = "", family: str | None = None) -> Loaded:
    """Load a file for the family the prompt and the data decide (or the one given).

    Generation data has its own loader (``data.generation.load_generation``).

    Raises:
        DataError: the file is unusable, or the prompt asks for what the data cannot feed.
    """
    family = family or family_for(path, prompt)
    if family == "generation":
        raise DataError(f"{path} holds generation records; load it with data.generation.load_generation")
    return load_extraction(path) if family == "extraction" else load_classification(path)
