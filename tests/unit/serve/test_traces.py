"""The server's trace writer: span feedback is kept, and the improve watch counts it."""

import datetime as dt

from adaptloop.store.db import TraceRow
from adaptloop.workspace import Workspace, init_workspace


def test_the_trace_writer_keeps_span_feedback_and_the_watch_counts_it(tmp_path):
    from adaptloop.agent.traffic import new_failures
    from adaptloop.serve.traces import TraceWriter

    ws = Workspace.open(init_workspace(tmp_path / "ws"))
    w = TraceWriter(ws.store, flush_ms=10)
    now = dt.datetime(2026, 11, 1, 10)
    w.add([{"id": "a", "ts": now, "task_id": None, "model_version": "v1", "input": "Call Anna Berg",
            "output": {"entities": [{"start": 5, "end": 14, "label": "PERSON", "score": 0.9}]}, "meta": {},
            "origin": "serve"}])
    assert w.text_of(ws.store, "a") == "Call Anna Berg"
    w.feedback("a", None, None, "rev", [[5, 14, "ORGANIZATION"]])
    w.close()
    row = ws.store.get(TraceRow, "a")
    assert row.feedback_spans == [[5, 14, "ORGANIZATION"]] and row.feedback_source == "rev"
    assert new_failures(ws) == 1
    ws.store.set_feedback([("a", None, None, "rev", [[5, 14, "PERSON"]])])
    assert new_failures(ws) == 0  # the correction now agrees with what the model said
