"""Load on `adaptloop serve`: N requests at concurrency C on loopback, with a promotion mid-load.

    .venv/bin/python benchmarks/serve_load.py                      # 10,000 requests, concurrency 32
    .venv/bin/python benchmarks/serve_load.py --workspace WS       # serve an existing workspace
    .venv/bin/python benchmarks/serve_load.py --workspace WS --onnx  # export both versions to ONNX first

Without --workspace it builds one: two quick cold starts on banking77 subsets (frozen MiniLM, the
embedded default), so the registry holds v1 and v2 with v2 in production. It starts the real
server (`adaptloop serve`, uvicorn) in a subprocess, fires the requests (one input each,
banking77 test texts) with httpx, and halfway through promotes the other version over the admin
endpoint. It then waits for the trace writer and counts the traces in the store.

Prints and writes benchmarks/results/serve-load.json: errors by kind, requests answered per model
version, throughput, p50/p99 latency, traces stored vs requests sent.
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
def running_server(ws: Path) -> Iterator[str]:
    """`adaptloop serve` on a free loopback port; yields its base URL once /healthz answers.
    On exit it is stopped gracefully (the trace writer flushes what is queued)."""
    import httpx

    port = free_port()
    log = (Path(ws).parent / "serve.log").open("w")  # the server's stderr, for a post-mortem
    server = subprocess.Popen([*EXE, "serve", "--port", str(port), "-w", str(ws)], stderr=log)
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
        server.terminate()
        server.wait(timeout=120)
        log.close()


async def load(base: str, texts: list[str], n: int, concurrency: int, token: str, promote_to: str) -> dict:
    import httpx

    lat: list[float] = []
    errors: dict[str, int] = {}
    versions: dict[str, int] = {}
    done = 0
    promoted_at = None
    q: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        q.put_nowait(i)

    async with httpx.AsyncClient(base_url=base, timeout=60.0,
                                 limits=httpx.Limits(max_connections=concurrency + 2)) as client:
        async def worker() -> None:
            nonlocal done, promoted_at
            while True:
                try:
                    i = q.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/predict", json={"input": texts[i % len(texts)]})
                    if r.status_code != 200:
                        errors[f"http {r.status_code}"] = errors.get(f"http {r.status_code}", 0) + 1
                    else:
                        v = r.json()["model_version"]
                        versions[v] = versions.get(v, 0) + 1
                except Exception as exc:  # a dropped connection is an error, counted by kind
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                lat.append(time.perf_counter() - t0)
                done += 1
                if done == n // 2 and promoted_at is None:
                    promoted_at = done
                    r = await client.post("/v1/admin/promote", json={"version": promote_to,
                                                                     "reason": "serve_load benchmark"},
                                          headers={"Authorization": f"Bearer {token}"})
                    if r.status_code != 200:
                        errors["promote failed"] = 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat.sort()
    return {"requests": n, "concurrency": concurrency, "errors": sum(errors.values()), "errors_by_kind": errors,
            "answered_by_version": versions, "promoted_after_requests": promoted_at,
            "wall_seconds": round(wall, 2), "throughput_rps": round(n / wall, 1),
            "p50_ms": round(1000 * lat[len(lat) // 2], 1), "p99_ms": round(1000 * lat[int(len(lat) * 0.99)], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--onnx", action="store_true",
                    help="`adaptloop export` both versions first (served through ONNX where it passes parity)")
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
    other = max(v.id for v in registry.versions(w.store) if v.id != current)
    import httpx

    exports = {}
    if a.onnx:
        for v in (current, other):
            done = subprocess.run([*EXE, "export", "-m", f"v{v}", "--json", "-w", str(ws)], check=True,
                                  capture_output=True, text=True)
            exports[f"v{v}"] = json.loads(done.stdout)
    with running_server(ws) as base:
        texts = [r["text"] for r in rows("banking77", "test")]
        result = asyncio.run(load(base, texts, a.requests, a.concurrency, w.settings.serve.admin_token, f"v{other}"))
        metrics = httpx.get(base + "/metrics").text
        result["served_after"] = httpx.get(base + "/healthz").json()["model_version"]
    with w.store._session() as s:
        after = s.scalar(select(func.count()).select_from(TraceRow))
    batch_lines = [ln for ln in metrics.splitlines() if ln.startswith("adaptloop_batch_size_")]
    result.update({"traces_stored": after - before, "traces_missing": a.requests - (after - before),
                   "workspace": str(ws), "promoted": f"v{current} → v{other}",
                   "batch_size_histogram": batch_lines, "machine": f"{os.cpu_count()} CPU cores",
                   "exports": {v: {k: e[k] for k in ("serves", "tried", "torch", "n", "reason")}
                               for v, e in exports.items()}})
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "batch_size_histogram"}, indent=1))


if __name__ == "__main__":
    main()
