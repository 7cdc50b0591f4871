"""What a server acknowledged survives its process: a writer killed before its batch reached the
database leaves a journal that the next writer replays, once."""

import subprocess
import sys
import textwrap

from sqlalchemy import func, select

from adaptloop.serve.traces import TraceWriter
from adaptloop.store.db import FeedbackEvent, TraceRow
from adaptloop.workspace import Workspace, init_workspace

KILLED = textwrap.dedent("""
    import datetime as dt, os, sys
    from adaptloop.serve.traces import TraceWriter
    from adaptloop.workspace import Workspace
    ws = Workspace.open(sys.argv[1])
    w = TraceWriter(ws.store, flush_ms=600_000, max_batch=10**6, spool=ws.root / ".adaptloop" / "spool")
    now = dt.datetime(2026, 1, 1)
    w.add([{"id": f"k{i}", "ts": now, "task_id": None, "model_version": "v1", "input": f"text {i}",
            "output": {"label": "a"}, "meta": {}, "origin": "serve"} for i in range(50)])
    w.feedback("k3", "b", None, "user", None)
    print("acknowledged", flush=True)
    os._exit(137)  # as kill -9: no flush, no close
""")


def count(ws, table) -> int:
    with ws.store._session() as s:
        return s.scalar(select(func.count()).select_from(table))


def test_acknowledged_traces_and_feedback_survive_a_killed_writer(tmp_path):
    root = init_workspace(tmp_path / "ws")
    p = subprocess.run([sys.executable, "-c", KILLED, str(root)], capture_output=True, text=True, timeout=120)
    assert "acknowledged" in p.stdout and p.returncode == 137, p.stderr
    ws = Workspace.open(root)
    assert count(ws, TraceRow) == 0  # nothing reached the database before the kill
    w = TraceWriter(ws.store, flush_ms=10, spool=root / ".adaptloop" / "spool")
    assert w.replayed == 51
    w.close()
    assert count(ws, TraceRow) == 50 and count(ws, FeedbackEvent) == 1
    assert ws.store.get(TraceRow, "k3").feedback_label == "b"
    again = TraceWriter(ws.store, flush_ms=10, spool=root / ".adaptloop" / "spool")
    assert again.replayed == 0  # replayed once, then deleted
    again.close()
    assert count(ws, FeedbackEvent) == 1 and not list((root / ".adaptloop" / "spool").glob("journal-*"))


def test_a_live_writers_journal_is_left_alone_and_emptied_as_it_writes(tmp_path):
    ws = Workspace.open(init_workspace(tmp_path / "ws"))
    spool = ws.root / ".adaptloop" / "spool"
    live = TraceWriter(ws.store, flush_ms=10, spool=spool)
    import datetime as dt

    live.add([{"id": "x", "ts": dt.datetime(2026, 1, 1), "task_id": None, "model_version": "v1", "input": "hi",
               "output": {}, "meta": {}, "origin": "serve"}])
    other = TraceWriter(ws.store, flush_ms=10, spool=spool)  # a second server on the same workspace
    assert other.replayed == 0
    other.close()
    live.close()
    assert count(ws, TraceRow) == 1 and not list(spool.glob("journal-*"))
