"""Load on `adaptloop serve`: N requests at concurrency C on loopback, with a promotion mid-load.

    .venv/bin/python benchmarks/serve_load.py                      # 10,000 requests, concurrency 32
    .venv/bin/python benchmarks/serve_load.py --workspace WS       # serve an existing workspace
    .venv/bin/python benchmarks/serve_load.py --workspace WS --onnx  # export both versions to ONNX first
    .venv/bin/python benchmarks/serve_load.py --peer               # and the hand-written peer, same model
    .venv/bin/python benchmarks/serve_load.py --workspace WS --hold  # production alone, no promotion mid-load

Without --workspace it builds one: two quick cold starts on banking77 subsets (frozen MiniLM, the
embedded default), so the registry holds v1 and v2 with v2 in production. It starts the real
server (`adaptloop serve`, uvicorn) in a subprocess and sends single-input requests (banking77
test texts) with aiohttp from the same machine: 200 to warm up, an open loop (``--open-rate``
requests/s for ``--open-seconds``, latency counted from when each request was due), then a closed
loop (``--requests`` at ``--concurrency``) during which the other version is promoted over the
admin endpoint. It then waits for the trace writer and counts the traces in the store. With
``--peer`` it measures benchmarks/peer_server.py (FastAPI + sentence-transformers, what a user
would write by hand) on the production model the same way.

Prints and writes benchmarks/results/serve-load.json: per server, errors by kind, requests
answered per model version, throughput, p50/p99 latency for both loops; traces stored vs sent;
the batch-size, queue-time and forward-pass histograms from /metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))
EXE = [sys.executable, "-m", "adaptloop.cli"]


def rows(name: str, split: str) -> list[dict]:
    with (DATASETS / name / f"{split}.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def build_workspace(ws: Path) -> None:
    subprocess.run([*EXE, "init", str(ws)], check=True, capture_output=True)
    train = rows("banking77", "train")
    for i, per in enumerate((4, 8)):
        seen: dict[str, int] = {}
        part = []
        for r in train:
            if seen.get(r["label"], 0) < per:
                seen[r["label"]] = seen.get(r["label"], 0) + 1
                part.append(r)
        p = ws.parent / f"seed{i}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
        subprocess.run([*EXE, "new", "route banking customer messages", "--data", str(p), "--budget", "60s",
                        "-w", str(ws), "--json"], check=True, capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(cmd: list[str], log_path: Path) -> Iterator[str]:
    """A server process started with ``cmd`` plus ``--port PORT`` on a free loopback port; yields its base
    URL once /healthz answers. On exit it is stopped gracefully (`adaptloop serve` flushes its traces)."""
    import httpx

    port = free_port()
    log = log_path.open("w")  # the server's stderr, for a post-mortem
    proc = subprocess.Popen([*cmd, "--port", str(port)], stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=120)
        log.close()


def running_server(ws: Path):
    """`adaptloop serve` on ``ws`` (see :func:`running`); its stderr goes to serve.log beside ``ws``."""
    return running([*EXE, "serve", "-w", str(ws)], Path(ws).parent / "serve.log")


async def closed_loop(base: str, texts: list[str], n: int, concurrency: int, token: str | None = None,
                      promote_to: str | None = None) -> dict:
    """``n`` single-input requests from ``concurrency`` clients that each send the next one as soon as the
    last is answered; with ``promote_to``, the other version is promoted over the admin endpoint halfway."""
    import aiohttp

    lat: list[float] = []
    errors: dict[str, int] = {}
    versions: dict[str, int] = {}
    done = 0
    promoted_at = None
    q: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        q.put_nowait(i)
    conn = aiohttp.TCPConnector(limit=concurrency + 2)
    async with aiohttp.ClientSession(base, connector=conn, timeout=aiohttp.ClientTimeout(total=60)) as client:
        async def worker() -> None:
            nonlocal done, promoted_at
            while True:
                try:
                    i = q.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                try:
                    async with client.post("/v1/predict", json={"input": texts[i % len(texts)]}) as r:
                        body = await r.json()
                    if r.status != 200:
                        errors[f"http {r.status}"] = errors.get(f"http {r.status}", 0) + 1
                    else:
                        v = body.get("model_version", "peer")
                        versions[v] = versions.get(v, 0) + 1
                except Exception as exc:  # a dropped connection is an error, counted by kind
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                lat.append(time.perf_counter() - t0)
                done += 1
                if promote_to and done == n // 2 and promoted_at is None:
                    promoted_at = done
                    async with client.post("/v1/admin/promote", json={"version": promote_to,
                                                                      "reason": "serve_load benchmark"},
                                           headers={"Authorization": f"Bearer {token}"}) as r:
                        if r.status != 200:
                            errors["promote failed"] = 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat.sort()
    return {"requests": n, "concurrency": concurrency, "errors": sum(errors.values()), "errors_by_kind": errors,
            "answered_by_version": versions, "promoted_after_requests": promoted_at,
            "wall_seconds": round(wall, 2), "throughput_rps": round(n / wall, 1),
            "p50_ms": round(1000 * lat[len(lat) // 2], 1), "p99_ms": round(1000 * lat[int(len(lat) * 0.99)], 1)}


async def open_loop(base: str, texts: list[str], rate: float, seconds: float) -> dict:
    """Requests sent at a fixed rate whatever the answers do (arrivals do not wait for replies, as real
    traffic does not); each latency counts from the moment its request was due, so a server that falls
    behind shows it."""
    import aiohttp

    n = int(rate * seconds)
    lat: list[float] = []
    errors: dict[str, int] = {}
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(base, connector=conn, timeout=aiohttp.ClientTimeout(total=60)) as client:
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        async def one(i: int) -> None:
            due = t0 + i / rate
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                async with client.post("/v1/predict", json={"input": texts[i % len(texts)]}) as r:
                    await r.read()
                    if r.status != 200:
                        errors[f"http {r.status}"] = errors.get(f"http {r.status}", 0) + 1
            except Exception as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            lat.append(loop.time() - due)

        await asyncio.gather(*(one(i) for i in range(n)))
    lat.sort()
    return {"rate_rps": rate, "seconds": seconds, "requests": n, "errors": sum(errors.values()),
            "errors_by_kind": errors, "p50_ms": round(1000 * lat[len(lat) // 2], 1),
            "p99_ms": round(1000 * lat[int(len(lat) * 0.99)], 1), "max_ms": round(1000 * lat[-1], 1)}


def write_peer_model(ws: Path, version: str, folder: Path) -> bool:
    """The production model's head and encoder for benchmarks/peer_server.py; False for a model that is
    not one encoder classifier (an ensemble: a hand-written peer would serve one encoder)."""
    import numpy as np

    from adaptloop.store import registry
    from adaptloop.train import load_trained
    from adaptloop.train.encoder import resolve_encoder
    from adaptloop.train.onnx_export import classifiers
    from adaptloop.workspace import Workspace

    w = Workspace.open(ws)
    mv = registry.resolve(w.store, version)
    path = w.artifacts.path(mv.artifact)
    clfs = classifiers(load_trained(path))
    if len(clfs) != 1:
        return False
    clf = clfs[0]
    folder.mkdir(parents=True, exist_ok=True)
    encoder = str(path / "encoder") if clf.encoder is not None else resolve_encoder(clf.encoder_name)
    np.savez(folder / "head.npz", weight=clf.weight, bias=clf.bias, labels=np.array(clf.labels))
    (folder / "encoder.json").write_text(json.dumps({"encoder": encoder}))
    return True


def measure(base: str, texts: list[str], a: argparse.Namespace, token: str | None = None,
            promote_to: str | None = None) -> dict:
    """Warm up, then the open loop at ``--open-rate``, then the closed loop at ``--concurrency``."""
    asyncio.run(closed_loop(base, texts, 200, 8))
    out = {"open_loop": asyncio.run(open_loop(base, texts, a.open_rate, a.open_seconds))}
    out["closed_loop"] = asyncio.run(closed_loop(base, texts, a.requests, a.concurrency, token, promote_to))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--open-rate", type=float, default=50.0, help="requests/s of the open loop")
    ap.add_argument("--open-seconds", type=float, default=30.0)
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--onnx", action="store_true",
                    help="`adaptloop export` both versions first (served through ONNX where it passes parity)")
    ap.add_argument("--peer", action="store_true",
                    help="also measure benchmarks/peer_server.py (FastAPI + sentence-transformers) on the same model")
    ap.add_argument("--hold", action="store_true",
                    help="no promotion mid-load: every request is answered by the production model")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "serve-load.json")
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    ws = a.workspace or Path(tempfile.mkdtemp(prefix="adaptloop-serve-")) / "ws"
    if a.workspace is None:
        build_workspace(ws)
    from sqlalchemy import func, select

    from adaptloop.store import registry
    from adaptloop.store.db import TraceRow
    from adaptloop.workspace import Workspace

    w = Workspace.open(ws)
    with w.store._session() as s:
        before = s.scalar(select(func.count()).select_from(TraceRow))
    current = registry.alias_target(w.store, "production")
    other = max((v.id for v in registry.versions(w.store) if v.id != current), default=None)
    if other is None and not a.hold:
        raise SystemExit("the workspace holds one model version: nothing to promote mid-load; pass --hold")
    import httpx

    exports = {}
    if a.onnx:
        for v in (current,) if a.hold else (current, other):
            done = subprocess.run([*EXE, "export", "-m", f"v{v}", "--json", "-w", str(ws)], check=True,
                                  capture_output=True, text=True)
            exports[f"v{v}"] = json.loads(done.stdout)
    texts = [r["text"] for r in rows("banking77", "test")]
    peer_dir = ws.parent / "peer-model"
    has_peer = a.peer and write_peer_model(ws, f"v{current}", peer_dir)
    with running_server(ws) as base:
        result = measure(base, texts, a, w.settings.serve.admin_token, None if a.hold else f"v{other}")
        metrics = httpx.get(base + "/metrics").text
        result["closed_loop"]["served_after"] = httpx.get(base + "/healthz").json()["model_version"]
    sent = 200 + result["open_loop"]["requests"] + a.requests
    with w.store._session() as s:
        after = s.scalar(select(func.count()).select_from(TraceRow))
    keep = ("adaptloop_batch_size_", "adaptloop_queue_seconds_", "adaptloop_forward_seconds_")
    result.update({"traces_stored": after - before, "traces_missing": sent - (after - before),
                   "workspace": str(ws), "promoted": "none (--hold)" if a.hold else f"v{current} → v{other}",
                   "histograms": [ln for ln in metrics.splitlines() if ln.startswith(keep)],
                   "exports": {v: {k: e[k] for k in ("serves", "tried", "torch", "n", "reason")}
                               for v, e in exports.items()}})
    report = {"machine": f"{os.cpu_count()} CPU cores, client on the same machine", "adaptloop": result}
    if a.peer and not has_peer:
        report["peer"] = "skipped: the production model is not a single encoder classifier"
    elif has_peer:
        with running([sys.executable, str(REPO / "benchmarks" / "peer_server.py"), str(peer_dir)],
                     peer_dir / "peer.log") as base:
            report["peer"] = measure(base, texts, a)
        ours, theirs = result["closed_loop"]["throughput_rps"], report["peer"]["closed_loop"]["throughput_rps"]
        report["throughput_ratio"] = round(ours / theirs, 2) if theirs else None
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    shown = {**report, "adaptloop": {k: v for k, v in result.items() if k != "histograms"}}
    print(json.dumps(shown, indent=1))


if __name__ == "__main__":
    main()
