"""The trace writer: every request's trace goes to the store in batches, off the request path.

A request hands its traces to an in-memory queue and returns; one thread drains the queue
every ``flush_ms`` (or sooner when it fills) and writes a batch in one transaction.
Feedback goes through the same queue, so it always lands after the trace it refers to. A
failed write is retried with the batch kept; after ``MAX_ATTEMPTS`` the batch is spilled to a
JSONL file (``adaptloop traces import`` loads it back). ``close`` flushes what is left — a
trace is never dropped and a request never waits for the database.

What a request was told is kept survives the process too: before a request is answered its
traces and feedback are appended to this process's journal (``spool/journal-*.jsonl``, handed
to the operating system, so a ``kill -9`` loses nothing), which is emptied whenever everything
queued has reached the database. A writer that starts replays every journal no live process
holds (its file lock is free) into the store — idempotently — and deletes it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import queue
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any

from adaptloop.store.db import Store

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8


class TraceWriter:
    """Batched, ordered writes of traces and feedback.

    Args:
        store: the workspace store.
        flush_ms: the longest a trace waits in memory.
        max_batch: a batch is written early once this many items wait.
        spool: folder for batches the database would not take.
    """

    def __init__(self, store: Store, *, flush_ms: float = 200.0, max_batch: int = 1000,
                 spool: Path | None = None) -> None:
        self.store = store
        self.spool = spool
        self.flush_s = flush_ms / 1000
        self.max_batch = max_batch
        self._q: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._pending: dict[str, str] = {}  # trace id → input, accepted but not yet written
        self._lock = threading.Lock()
        self.written = 0
        self.failures = 0
        self._stop = threading.Event()
        self._journal: IO[str] | None = None
        self.replayed = 0
        if spool is not None:
            spool.mkdir(parents=True, exist_ok=True)
            self.replayed = replay_journals(store, spool)
            self._journal = open(spool / f"journal-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl", "a", encoding="utf-8")
            fcntl.flock(self._journal, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while this process lives
        self._thread = threading.Thread(target=self._loop, name="adaptloop-trace-writer", daemon=True)
        self._thread.start()

    # -- the request side (never blocks on the database) ---------------------------------
    def add(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self._log([("trace", r) for r in rows])
            self._pending.update((r["id"], r["input"]) for r in rows)
            for r in rows:
                self._q.put(("trace", r))

    def feedback(self, trace_id: str, label: str | None, verdict: str | None, source: str | None,
                 spans: list[list[Any]] | None = None) -> None:
        item = (trace_id, label, verdict, source, spans, uuid.uuid4().hex)
        with self._lock:
            self._log([("feedback", item)])
            self._q.put(("feedback", item))

    def _log(self, items: list[tuple[str, Any]]) -> None:
        """Append to the journal before the request is answered (caller holds the lock)."""
        if self._journal is not None:
            self._journal.write("".join(json.dumps({"kind": k, "item": v}, default=str) + "\n" for k, v in items))
            self._journal.flush()

    def text_of(self, store: Store, trace_id: str) -> str | None:
        """A trace's input, pending or stored; None when there is no such trace."""
        from adaptloop.store.db import TraceRow

        with self._lock:
            if trace_id in self._pending:
                return self._pending[trace_id]
        row = store.get(TraceRow, trace_id)
        return None if row is None else row.input

    def is_pending(self, trace_id: str) -> bool:
        with self._lock:
            return trace_id in self._pending

    @property
    def backlog(self) -> int:
        return self._q.qsize()

    # -- the writer thread ---------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set() or not self._q.empty():
            batch = self._drain()
            if batch:
                self._write(batch)

    def _drain(self) -> list[tuple[str, Any]]:
        batch: list[tuple[str, Any]] = []
        deadline = time.monotonic() + self.flush_s
        while len(batch) < self.max_batch:
            timeout = deadline - time.monotonic()
            if timeout <= 0 and batch:
                break
            try:
                batch.append(self._q.get(timeout=max(0.001, timeout)))
            except queue.Empty:
                if batch or self._stop.is_set():
                    break
                deadline = time.monotonic() + self.flush_s
        return batch

    def _write(self, batch: list[tuple[str, Any]]) -> None:
        """Traces first, then feedback, in order; retried until written."""
        attempt = 0
        while True:
            try:
                rows = [item for kind, item in batch if kind == "trace"]
                self.store.add_traces(rows)
                self.store.set_feedback([item for kind, item in batch if kind == "feedback"])
                with self._lock:
                    for r in rows:
                        self._pending.pop(r["id"], None)
                    self._forget()
                self.written += len(rows)
                return
            except Exception as exc:  # a locked or unreachable database: keep the batch, retry
                attempt += 1
                self.failures += 1
                log.warning("trace write failed (attempt %d): %s", attempt, exc)
                if attempt >= MAX_ATTEMPTS and self.spool is not None:
                    self._spill(batch)
                    return
                time.sleep(min(2.0, 0.05 * 2 ** attempt))

    def _spill(self, batch: list[tuple[str, Any]]) -> None:
        """Write a batch the database refused to a JSONL trace file (the DESIGN.md format)."""
        assert self.spool is not None
        self.spool.mkdir(parents=True, exist_ok=True)
        path = self.spool / f"traces-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S%f}.jsonl"
        feedback = {item[0]: item for kind, item in batch if kind == "feedback"}
        with path.open("w", encoding="utf-8") as f:
            for kind, r in batch:
                if kind != "trace":
                    continue
                fb = feedback.get(r["id"])
                f.write(json.dumps({"id": r["id"], "ts": r["ts"].isoformat(), "model_version": r["model_version"],
                                    "input": r["input"], "output": r["output"], "meta": r["meta"],
                                    "feedback": _feedback_json(fb)})
                        + "\n")
        with self._lock:
            for kind, r in batch:
                if kind == "trace":
                    self._pending.pop(r["id"], None)
            self._forget()
        log.error("the store refused %d traces; kept in %s (load with `adaptloop traces import`)", len(batch), path)

    def _forget(self) -> None:
        """Empty the journal once everything it holds is in the store or a spool file (caller holds the lock:
        nothing can be journaled and queued meanwhile)."""
        if self._journal is not None and self._q.empty():
            self._journal.truncate(0)

    def close(self) -> None:
        """Write everything still queued, then stop the thread and remove the (empty) journal."""
        self._stop.set()
        self._thread.join()
        if self._journal is not None:
            with self._lock:
                self._forget()
                empty = self._journal.tell() == 0 or os.path.getsize(self._journal.name) == 0
                name = self._journal.name
                self._journal.close()
                self._journal = None
            if empty:
                os.unlink(name)


def replay_journals(store: Store, spool: Path) -> int:
    """Write into the store what the journals of dead writers hold (their lock is free), then delete them.
    Idempotent: traces are skipped by id, feedback by event id. Returns how many records were replayed."""
    n = 0
    for path in sorted(spool.glob("journal-*.jsonl")):
        with open(path, "a+", encoding="utf-8") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer's journal
            f.seek(0)
            traces, feedback = [], []
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut by the kill: it was never acknowledged
                    continue
                if rec.get("kind") == "trace":
                    row = rec["item"]
                    if isinstance(row.get("ts"), str):
                        row["ts"] = dt.datetime.fromisoformat(row["ts"])
                    traces.append(row)
                elif rec.get("kind") == "feedback":
                    feedback.append(tuple(rec["item"]))
            store.add_traces(traces)
            store.set_feedback(feedback)
            n += len(traces) + len(feedback)
        path.unlink()
        if n:
            log.warning("replayed %d traces and feedback a stopped server had acknowledged (%s)", n, path.name)
    return n


def _feedback_json(fb: tuple[Any, ...] | None) -> dict[str, Any]:
    """A queued feedback item as the trace format's ``feedback`` object."""
    if fb is None:
        return {}
    out = {"label": fb[1], "verdict": fb[2], "source": fb[3]}
    return out | ({"entities": fb[4]} if len(fb) > 4 and fb[4] is not None else {})
