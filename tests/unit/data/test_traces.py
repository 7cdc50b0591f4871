"""Trace parsing: what a trace line may hold (labels or entities), and what is quarantined with its reason."""

import datetime as dt
import json

import pytest

from adaptloop.data.traces import parse_trace, read_traces
from adaptloop.errors import DataError
from tests.conftest import write_jsonl


def test_trace_parsing_and_quarantine(tmp_path):
    good = {"id": "t1", "ts": "2026-11-01T10:00:00Z", "model_version": "v1", "input": "where is my card",
            "output": {"label": "card_arrival", "score": 0.4}, "feedback": {"label": "card_delivery_estimate",
                                                                         "source": "agent-7"}}
    t = parse_trace(good)
    assert t.ts == dt.datetime(2026, 11, 1, 10) and t.feedback_label == "card_delivery_estimate"
    assert parse_trace({"id": 5, "ts": 0, "input": {"text": "x"}, "output": None}).output is None
    lines = [json.dumps(good), "{not json", json.dumps({"input": "no id"}), json.dumps({"id": "t2", "input": ""}),
             json.dumps({"id": "t3", "input": "x", "feedback": {"verdict": "maybe"}}), json.dumps(good),
             json.dumps({"id": "t4", "input": "fine", "ts": "yesterday"}),
             json.dumps({"id": "t5", "input": "card\x00 lost"}), json.dumps({"id": "t6", "input": "ok",
                                                                          "meta": {"k\x00": 1}})]
    p = tmp_path / "t.jsonl"
    p.write_text("\n".join(lines) + "\n")
    traces, bad = read_traces(p)
    assert [t.id for t in traces] == ["t1"]
    reasons = [q.reason for q in bad]
    assert len(bad) == 8
    assert sum("NUL character" in r for r in reasons) == 2  # PostgreSQL text cannot hold one: never stored
    assert any("not valid JSON" in r for r in reasons) and any("no 'id'" in r for r in reasons)
    assert any("verdict" in r for r in reasons) and any("repeats" in r for r in reasons)
    assert any("is not a time; write 'ts' as ISO 8601" in r for r in reasons)
    with pytest.raises(DataError, match="does not exist"):
        read_traces(tmp_path / "missing.jsonl")


def test_span_feedback_is_parsed_and_bad_spans_are_quarantined_with_their_reason(tmp_path):
    ok = {"id": "s1", "input": "Call Anna Berg now", "feedback": {"entities": [{"start": 5, "end": 14,
                                                                                 "label": "PERSON"}]}}
    t = parse_trace(ok)
    assert t.feedback_spans == ((5, 14, "PERSON"),) and t.row("x", None)["feedback_spans"] == [[5, 14, "PERSON"]]
    assert parse_trace({"id": "s2", "input": "nothing here", "feedback": {"entities": []}}).feedback_spans == ()
    lines = [ok, {"id": "s3", "input": "short", "feedback": {"entities": [[0, 50, "PERSON"]]}},
             {"id": "s4", "input": "Anna Berg", "feedback": {"entities": "Anna"}},
             {"id": "s5", "input": "Anna Berg", "feedback": {"entities": [[0, 4, "A"], [2, 9, "B"]]}}]
    traces, bad = read_traces(write_jsonl(tmp_path / "t.jsonl", lines))
    assert [t.id for t in traces] == ["s1"] and len(bad) == 3
    reasons = " | ".join(q.reason for q in bad)
    assert "out of range" in reasons and "must be a list" in reasons and "overlap" in reasons
