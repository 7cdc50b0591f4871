"""Extraction data from one format to the other: text + character spans ↔ tokens + IOB2 tags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adaptloop.data.sources import load_extraction
from adaptloop.data.spans import spans_to_tags
from adaptloop.errors import AdaptloopError

__all__ = ["convert_extraction"]


def convert_extraction(data: Path, to: str, output: Path) -> dict[str, Any]:
    """Read entity JSONL in any supported format and write it as ``to`` (``spans``: character offsets;
    ``tags``: IOB2 over word units) into ``output``. Malformed lines are not written.

    Returns:
        ``{"written", "output", "quarantined": [{"line", "reason"}, ...]}``.

    Raises:
        AdaptloopError: ``to`` is neither ``spans`` nor ``tags``.
    """
    if to not in ("spans", "tags"):
        raise AdaptloopError(f"--to must be 'spans' or 'tags', not '{to}'")
    if output.is_dir():
        raise AdaptloopError(f"--output {output} is a folder; give a file name, e.g. {output / 'converted.jsonl'}")
    loaded = load_extraction(data)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as f:
        for e in loaded.examples:
            if to == "spans":
                row = {"text": e.text, "spans": [{"start": s_, "end": t, "label": lab, "value": e.text[s_:t]}
                                                 for s_, t, lab in e.spans]}
            else:
                tokens, tags = spans_to_tags(e.text, e.spans)
                row = {"tokens": tokens, "tags": tags}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {"written": len(loaded.examples), "output": str(output),
            "quarantined": [{"line": q.line_no, "reason": q.reason} for q in loaded.quarantined]}
