"""Chaos: kill -9 adaptloop at random moments and check that nothing is lost or left broken.

    python benchmarks/chaos.py [--trials 20] [--seed 0] [--out benchmarks/results/chaos.json]

On a banking77 subset (6 intents) with the real backends, four kinds of trial:

- ``new``: ``adaptloop new --budget 20s`` killed at a random moment, then ``new --resume``;
- ``improve``: fresh traffic imported, then ``adaptloop improve --budget 40s`` killed at a random moment;
- ``promote``: a process moving ``production`` back and forth (admin promotions and rollbacks),
  killed at a random moment;
- ``serve``: ``adaptloop serve`` under load (predictions and feedback from 8 client threads),
  killed at a random moment, then started again.

After every kill: the store opens; exactly one version is ``production`` and its artifact loads;
``--resume`` (``new``) finishes the run; every trace and feedback the server acknowledged (HTTP
200) is in the store once the server is up again. Prints one line per kind and writes the counts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))
AL = [sys.executable, "-m", "adaptloop.cli"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def sh(*args: str, ws: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*AL, *args, "-w", str(ws)], capture_output=True, text=True, env=ENV, timeout=timeout)


def killed(args: list[str], ws: Path, at: float) -> int:
    """Start ``adaptloop ARGS`` and kill -9 it after ``at`` seconds (or let it finish first)."""
    p = subprocess.Popen([*AL, *args, "-w", str(ws)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=ENV, start_new_session=True)
    try:
        return p.wait(timeout=at)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # the worker processes too
        p.wait()
        return -9


def consistent(ws: Path) -> tuple[bool, str]:
    """The store opens, exactly one version is production and its artifact loads."""
    from adaptloop.store import registry
    from adaptloop.train import load_trained
    from adaptloop.workspace import Workspace

    try:
        w = Workspace.open(ws)
        target = registry.alias_target(w.store, "production")
        if target is None:
            return True, "no production yet"
        mv = registry.resolve(w.store, f"v{target}")
        load_trained(w.artifacts.path(mv.artifact))
        w.store.engine.dispose()
        return True, f"production v{target}"
    except Exception as exc:  # any failure here is the finding
        return False, f"{type(exc).__name__}: {exc}"


def subset(split: str, per_class: int, offset: int = 0) -> list[dict]:
    rows = [json.loads(x) for x in (DATASETS / "banking77" / f"{split}.jsonl").read_text().splitlines()]
    keep = sorted({r["label"] for r in rows})[:6]
    seen: dict[str, int] = {}
    out = []
    for r in rows:
        if r["label"] in keep:
            seen[r["label"]] = seen.get(r["label"], 0) + 1
            if offset < seen[r["label"]] <= offset + per_class:
                out.append({"text": r["text"], "label": r["label"]})
    return out


def trial_new(ws: Path, data: Path, rng: random.Random) -> dict:
    # a run on this data takes about 7 s (3 s of it starting Python): the kill lands in any phase
    rc = killed(["new", "route banking messages", "--data", str(data), "--budget", "20s"], ws, rng.uniform(0.5, 7))
    ok, why = consistent(ws)
    resumed = None
    if rc == -9:
        r = sh("new", "--resume", ws=ws)
        resumed = r.returncode == 0 or "no interrupted run" in r.stderr or "stopped before its data" in r.stderr
    ok2, why2 = consistent(ws)
    return {"killed": rc == -9, "consistent": ok and ok2, "resumed": resumed, "detail": why2 if ok else why}


def trial_improve(ws: Path, traffic: Path, rng: random.Random) -> dict:
    """Fresh traffic (new ids), then an improve cycle killed at a random moment."""
    sh("traces", "import", str(traffic), ws=ws)
    rc = killed(["improve", "--budget", "40s"], ws, rng.uniform(0.5, 6))  # a cycle on this data takes ~5 s
    ok, why = consistent(ws)
    return {"killed": rc == -9, "consistent": ok, "detail": why}


PROMOTER = """
import sys, itertools
from adaptloop.store import registry
from adaptloop.workspace import Workspace
ws = Workspace.open(sys.argv[1])
versions = [v.id for v in registry.versions(ws.store)]
for i in itertools.count():
    registry.force_promote(ws.store, versions[i % len(versions)], who="chaos", why="churn")
    if i % 3 == 2:
        try:
            registry.rollback(ws.store, who="chaos", reason="churn")
        except Exception:
            pass
"""


def trial_promote(ws: Path, rng: random.Random) -> dict:
    p = subprocess.Popen([sys.executable, "-c", PROMOTER, str(ws)], env=ENV, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(1.5, 4.0))
    p.send_signal(signal.SIGKILL)
    p.wait()
    ok, why = consistent(ws)
    return {"killed": True, "consistent": ok, "detail": why}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port: int, timeout: float = 120) -> bool:
    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            time.sleep(0.2)
    return False


def trial_serve(ws: Path, texts: list[str], labels: list[str], rng: random.Random) -> dict:
    import httpx

    port = free_port()
    p = subprocess.Popen([*AL, "serve", "--host", "127.0.0.1", "--port", str(port), "-w", str(ws)], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    if not wait_up(port):
        os.killpg(p.pid, signal.SIGKILL)
        return {"killed": False, "consistent": False, "detail": "server did not start"}
    acked: list[str] = []
    fed: list[str] = []
    lock, stop = threading.Lock(), threading.Event()

    def client(k: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    r = c.post("/v1/predict", json={"input": texts[(k * 7919 + i) % len(texts)]})
                    if r.status_code == 200:
                        tid = r.json()["outputs"][0]["trace_id"]
                        with lock:
                            acked.append(tid)
                        f = c.post("/v1/feedback", json={"trace_id": tid, "label": labels[i % len(labels)]})
                        if f.status_code == 200:
                            with lock:
                                fed.append(tid)
                except httpx.HTTPError:
                    return

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(8)]
    for t in threads:
        t.start()
    time.sleep(rng.uniform(1.0, 5.0))
    os.killpg(p.pid, signal.SIGKILL)
    stop.set()
    p.wait()
    for t in threads:
        t.join(timeout=10)
    # up again: the new server's writer replays what the killed one acknowledged
    p2 = subprocess.Popen([*AL, "serve", "--host", "127.0.0.1", "--port", str(port), "-w", str(ws)], env=ENV,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    up = wait_up(port)
    os.killpg(p2.pid, signal.SIGTERM)
    p2.wait(timeout=60)
    from adaptloop.store.db import FeedbackEvent, TraceRow
    from adaptloop.workspace import Workspace

    w = Workspace.open(ws)
    with w.store._session() as s:
        from sqlalchemy import select

        stored = set(s.scalars(select(TraceRow.id).where(TraceRow.id.in_(acked)))) if acked else set()
        with_fb = (set(s.scalars(select(FeedbackEvent.trace_id).where(FeedbackEvent.trace_id.in_(fed))))
                   if fed else set())
    w.store.engine.dispose()
    ok, why = consistent(ws)
    return {"killed": True, "consistent": ok and up, "acknowledged": len(acked),
            "traces_lost": len(set(acked) - stored), "feedback_acknowledged": len(fed),
            "feedback_lost": len(set(fed) - with_fb), "detail": why}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20, help="kills of each kind")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "chaos.json")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    tmp = Path(tempfile.mkdtemp(prefix="adaptloop-chaos-"))
    ws = tmp / "ws"
    subprocess.run([*AL, "init", str(ws)], check=True, capture_output=True, env=ENV)
    data = tmp / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in subset("train", 20)))
    t0 = time.monotonic()
    results: dict[str, list[dict]] = {"new": [], "improve": [], "promote": [], "serve": []}
    for _ in range(a.trials):
        results["new"].append(trial_new(ws, data, rng))
    r = sh("new", "route banking messages", "--data", str(data), "--budget", "20s", ws=ws)  # a production model
    settings = ws / "adaptloop.toml"  # every cycle retrains (a few failures are enough), so kills land in it
    settings.write_text(settings.read_text().replace("min_failures = 20", "min_failures = 3"))
    rows = subset("train", 40, offset=20)
    labels = sorted({x["label"] for x in rows})
    for k in range(a.trials):
        traffic = tmp / f"traffic-{k}.jsonl"
        traffic.write_text("".join(json.dumps({"id": f"c{k}-{i}", "input": x["text"], "feedback": {
            "label": x["label"] if rng.random() > 0.2 else rng.choice(labels), "source": f"u{i % 5}"}}) + "\n"
            for i, x in enumerate(rows)))
        results["improve"].append(trial_improve(ws, traffic, rng))
    for _ in range(a.trials):
        results["promote"].append(trial_promote(ws, rng))
    texts = [x["text"] for x in rows]
    for _ in range(max(1, a.trials // 4)):
        results["serve"].append(trial_serve(ws, texts, labels, rng))
    summary = {}
    for kind, trials in results.items():
        summary[kind] = {"trials": len(trials), "killed": sum(t["killed"] for t in trials),
                         "consistent": sum(t["consistent"] for t in trials)}
        if kind == "new":
            summary[kind]["resumed"] = sum(bool(t["resumed"]) for t in trials if t["killed"])
        if kind == "serve":
            summary[kind] |= {k: sum(t.get(k, 0) for t in trials) for k in
                              ("acknowledged", "traces_lost", "feedback_acknowledged", "feedback_lost")}
        print(kind, json.dumps(summary[kind]))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"seed": a.seed, "trials": a.trials, "summary": summary, "results": results,
                                 "wall_s": round(time.monotonic() - t0, 1)}, indent=1) + "\n")
    print(f"written to {a.out} ({time.monotonic() - t0:.0f}s); first production: {r.returncode == 0}")


if __name__ == "__main__":
    main()
