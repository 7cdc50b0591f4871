"""Traces: one JSON object per inference (format in DESIGN.md), parsed and validated.

    {"id", "ts", "model_version", "input", "output", "feedback": {"label"?, "verdict"?, "source"?}, "meta"?}

An extraction trace's feedback carries the corrected entities instead of a label:
``"feedback": {"entities": [{"start", "end", "label"}, ...]}`` (``[]``: the text has none).

``input`` is the text (or ``{"text": ...}``); ``output`` and ``model_version`` may be null
for logs from another system — the improve cycle then predicts with the current model.
``ts`` is ISO 8601 or epoch seconds. A line that does not fit is quarantined with the
reason; nothing is dropped silently. Import is idempotent by ``id``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptloop.data.sources import Quarantined, _records
from adaptloop.errors import DataError

VERDICTS = ("correct", "wrong")
MAX_INPUT_CHARS = 20_000


@dataclass(frozen=True)
class Trace:
    """One validated trace, ready for the store."""

    id: str
    ts: dt.datetime
    input: str
    model_version: str | None = None
    output: dict[str, Any] | None = None
    feedback_label: str | None = None
    feedback_verdict: str | None = None
    feedback_source: str | None = None
    feedback_spans: tuple[tuple[int, int, str], ...] | None = None  # extraction: the corrected entities
    meta: dict[str, Any] = field(default_factory=dict)

    def row(self, origin: str, task_id: int | None) -> dict[str, Any]:
        """Column values for ``store.db.TraceRow``."""
        has_feedback = (self.feedback_label is not None or self.feedback_verdict is not None
                        or self.feedback_spans is not None)
        spans = None if self.feedback_spans is None else [list(sp) for sp in self.feedback_spans]
        return {"id": self.id, "ts": self.ts, "task_id": task_id, "model_version": self.model_version,
                "input": self.input, "output": self.output, "feedback_label": self.feedback_label,
                "feedback_verdict": self.feedback_verdict, "feedback_source": self.feedback_source,
                "feedback_spans": spans, "feedback_ts": self.ts if has_feedback else None, "meta": self.meta,
                "origin": origin}


def parse_ts(value: Any) -> dt.datetime:
    """A UTC naive datetime from ISO 8601 text or epoch seconds.

    Raises:
        ValueError: neither.
    """
    fix = "write 'ts' as ISO 8601 (2026-11-01T10:00:00Z) or Unix seconds"
    if isinstance(value, bool):
        raise ValueError(f"'ts' is a boolean; {fix}")
    if isinstance(value, (int, float)):
        try:
            return dt.datetime.fromtimestamp(float(value), dt.timezone.utc).replace(tzinfo=None)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"'ts' {value} is out of range; {fix}") from None
    if isinstance(value, str):
        try:
            t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"'ts' {value[:40]!r} is not a time; {fix}") from None
        return t.astimezone(dt.timezone.utc).replace(tzinfo=None) if t.tzinfo else t
    raise ValueError(f"'ts' is a {type(value).__name__}; {fix}")


def parse_output(value: Any) -> dict[str, Any] | None:
    """``{"label", "score"?}`` from a label string or an output object; None when absent."""
    if value is None:
        return None
    if isinstance(value, str):
        return {"label": value}
    if isinstance(value, dict) and ("label" in value or "entities" in value):
        return value
    raise ValueError("output must be null, a label string or an object with 'label'")


def has_nul(value: Any) -> bool:
    """Whether any string in ``value`` (keys included, at any depth) holds a NUL character."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(has_nul(v) for v in value)
    return False


def parse_trace(obj: dict[str, Any]) -> Trace:
    """Validate one trace object.

    Raises:
        ValueError: with the reason the line is quarantined.
    """
    if has_nul(obj):
        raise ValueError("a NUL character (\\u0000) in the line: no store keeps it (PostgreSQL text cannot hold "
                         "one); remove it from the log")
    tid = obj.get("id")
    if not isinstance(tid, (str, int)) or isinstance(tid, bool) or str(tid).strip() == "":
        raise ValueError("no 'id': traces are imported idempotently by id; give every line one")
    text = obj.get("input")
    if isinstance(text, dict):
        text = text.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("'input' must be a non-empty string (or {\"text\": ...})")
    if len(text) > MAX_INPUT_CHARS:
        raise ValueError(f"'input' has {len(text)} characters; the limit is {MAX_INPUT_CHARS}")
    ts = parse_ts(obj["ts"]) if obj.get("ts") is not None else dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    fb = obj.get("feedback") or {}
    if not isinstance(fb, dict):
        raise ValueError("'feedback' must be an object with 'label', 'entities', 'verdict' and/or 'source'")
    label, verdict, source = fb.get("label"), fb.get("verdict"), fb.get("source")
    spans = parse_feedback_spans(text, fb.get("entities"))
    if label is not None and (not isinstance(label, str) or not label.strip()):
        raise ValueError("feedback 'label' must be a non-empty string")
    if verdict is not None and verdict not in VERDICTS:
        raise ValueError(f"feedback 'verdict' must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        raise ValueError("'meta' must be an object")
    mv = obj.get("model_version")
    return Trace(id=str(tid), ts=ts, input=text, model_version=None if mv is None else str(mv),
                 output=parse_output(obj.get("output")), feedback_label=label, feedback_verdict=verdict,
                 feedback_source=None if source is None else str(source), feedback_spans=spans, meta=meta)


def parse_feedback_spans(text: str, value: Any) -> tuple[tuple[int, int, str], ...] | None:
    """Corrected entities ``[{start, end, label}, ...]`` (or 3-item lists; ``[]``: none), checked
    against the text; None when absent.

    Raises:
        ValueError: not a list, or a span that does not fit the text (the reason says which).
    """
    from adaptloop.data.spans import check_spans

    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError("feedback 'entities' must be a list of {start, end, label}")
    spans, why = check_spans(text, value)
    if why:
        raise ValueError(f"feedback 'entities': {why}")
    return tuple(spans)


def read_traces(path: str | Path) -> tuple[list[Trace], list[Quarantined]]:
    """Every valid trace in a JSONL file, and the lines quarantined with their reason.

    Raises:
        DataError: the file is missing or holds no valid trace at all.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p} does not exist; pass a JSONL file of traces (format: DESIGN.md)")
    good, bad, _keys = _records(p)
    out: list[Trace] = []
    seen: set[str] = set()
    for line_no, raw, obj in good:
        try:
            t = parse_trace(obj)
        except (ValueError, TypeError) as exc:
            bad.append(Quarantined(line_no, raw, str(exc)))
            continue
        if t.id in seen:
            bad.append(Quarantined(line_no, raw, f"id {t.id} repeats an earlier line of this file"))
            continue
        seen.add(t.id)
        out.append(t)
    if not out and not bad:
        raise DataError(f"{p} is empty; pass a JSONL file of traces")
    return out, bad
