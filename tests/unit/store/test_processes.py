"""Many processes, one store: `adaptloop serve` (a real server process writing traces), an `improve --watch`
loop and a second `improve` started at the same moment by someone else (spawned processes; the fake trainer
behind the seam keeps the cycles short), on SQLite and on a real PostgreSQL. No acknowledged trace or
feedback is lost, exactly one of the two cycles moves production, and the server hot-swaps to it."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select

from adaptloop.agent.coldstart import cold_start
from adaptloop.agent.traffic import new_failures
from adaptloop.data.sources import load_classification
from adaptloop.store import registry
from adaptloop.store.db import FeedbackEvent, RegistryEvent, TraceRow
from adaptloop.train.fake import _features, fake_trainer
from adaptloop.workspace import Workspace
from tests.conftest import init_tiny_workspace, subset, write_jsonl

MIN_FAILURES = 15


def _improve(root: str, watch: bool, barrier, results) -> None:
    """One improve process: the watch loop's first cycle, or a single cycle."""
    from contextlib import nullcontext

    from adaptloop.agent.flows import improve_cycles
    from adaptloop.types import no_progress

    ws = Workspace.open(Path(root))
    barrier.wait()
    cycles = improve_cycles(ws, None, "30s", watch=watch, interval=0.2, progress=lambda: nullcontext(no_progress),
                            on_import=lambda _: None, on_wait=lambda n, k: None, make_trainer=fake_trainer,
                            embed_fn=_features)
    result = next(cycles)
    results.put(("watch" if watch else "once", result["decision"], result["reason"], result.get("candidate")))


def _collect(results, procs, timeout: float) -> list[tuple]:
    """Each process's result; fails as soon as one has died without one (its traceback is on stderr)."""
    import queue

    out: list[tuple] = []
    t0 = time.monotonic()
    while len(out) < len(procs):
        try:
            out.append(results.get(timeout=1))
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            assert not dead, f"an improve process died (exit codes {dead}); see its traceback above"
            assert time.monotonic() - t0 < timeout, "the improve processes did not finish"
    for p in procs:
        p.join(timeout=60)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Traffic:
    """Clients sending predictions and feedback (the true label) until stopped; what was acknowledged."""

    def __init__(self, port: int, rows: list[dict]) -> None:
        self.port, self.rows = port, rows
        self.acked: list[str] = []
        self.fed: list[str] = []
        self.stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(k,), daemon=True) for k in range(3)]

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(30)

    def _client(self, k: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30) as c:
            i = k
            while not self.stop.is_set():
                row = self.rows[i % len(self.rows)]
                r = c.post("/v1/predict", json={"input": row["text"]})
                assert r.status_code == 200, r.text
                tid = r.json()["outputs"][0]["trace_id"]
                self.acked.append(tid)
                f = c.post("/v1/feedback", json={"trace_id": tid, "label": row["label"], "source": f"user{i % 7}"})
                assert f.status_code == 200, f.text
                self.fed.append(tid)
                i += 3
                time.sleep(0.01)


def _healthz(port: int) -> dict | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
    except httpx.HTTPError:
        return None


def _wait(cond, timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_serve_watch_and_a_second_improve_share_one_store(store_url, tmp_path, banking_sample):
    import tomli_w

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    root = init_tiny_workspace(tmp_path / "ws", store_url=store_url)
    cfg = root / "adaptloop.toml"
    settings = tomllib.loads(cfg.read_text())
    settings["search"]["workers"], settings["agent"]["plateau_rounds"] = 1, 1
    settings["improve"]["min_failures"] = MIN_FAILURES
    cfg.write_text(tomli_w.dumps(settings))
    ws = Workspace.open(root)
    seed = write_jsonl(tmp_path / "seed.jsonl", subset(banking_sample, 5, 6))
    first = cold_start(ws, load_classification(seed), "route banking messages", 30,
                       make_trainer=fake_trainer, embed_fn=_features)
    assert registry.alias_target(ws.store, "production") == first.version
    traffic_rows = subset(banking_sample, 5, 80, offset=6)
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen([str(Path(sys.executable).parent / "adaptloop"), "serve", "--port", str(port),
                               "-w", str(root)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        _wait(lambda: _healthz(port) is not None, 60, "the server")
        with Traffic(port, traffic_rows) as traffic:
            _wait(lambda: new_failures(ws) >= 2 * MIN_FAILURES, 60, "failures with feedback")
            ctx = mp.get_context("spawn")
            barrier, results = ctx.Barrier(2), ctx.Queue()
            procs = [ctx.Process(target=_improve, args=(str(root), watch, barrier, results)) for watch in (True, False)]
            for p in procs:
                p.start()
            outcomes = _collect(results, procs, timeout=240)
            production = registry.alias_target(ws.store, "production")
            _wait(lambda: (_healthz(port) or {}).get("model_version") == f"v{production}", 30, "the hot swap")
            time.sleep(0.5)  # traffic on the new model too
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # a clean stop flushes the trace writer
        server.wait(timeout=60)
    decisions = sorted(d for _, d, _, _ in outcomes)
    moves = ws.store.all(select(RegistryEvent).where(RegistryEvent.alias == "production").order_by(RegistryEvent.id))
    print(f"{store_url.split(':')[0]}: outcomes {outcomes}; production moves {[e.event for e in moves]}; "
          f"{len(traffic.acked)} traces, {len(traffic.fed)} feedback acknowledged")
    assert decisions.count("promoted") == 1, outcomes  # one cycle moved production, not two
    assert [e.event for e in moves] == ["promoted", "promoted"]  # the cold start's, then one cycle's
    assert production != first.version
    loser = next(o for o in outcomes if o[1] != "promoted")
    assert loser[1] == "refused"
    stored = set(ws.store.all(select(TraceRow.id)))
    assert set(traffic.acked) <= stored, "an acknowledged trace is missing"
    with ws.store.session() as s:
        fed = set(s.scalars(select(FeedbackEvent.trace_id)))
        assert s.scalar(select(func.count()).select_from(TraceRow)) >= len(traffic.acked)
    assert set(traffic.fed) <= fed, "an acknowledged feedback is missing"
