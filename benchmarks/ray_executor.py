"""Trials on Ray beside trials in local processes: the same cold start, three ways, one script run.

    .venv/bin/python benchmarks/ray_executor.py --dataset banking77 --budget 3m

1. `[search] executor = "local"` (two worker processes, the default);
2. `executor = "ray"` on a local Ray cluster this script starts (`ray start --head`, two CPUs:
   two trials at once);
3. the same on Ray, with the worker running the first trial after the baseline killed
   (SIGKILL) a few seconds into it: what the run did next.

Each is `adaptloop new` on train.jsonl, then `adaptloop eval` on test.jsonl. Prints a table and
writes benchmarks/results/ray-executor-<dataset>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))
EXE = [sys.executable, "-m", "adaptloop.cli"]


def workspace(search: dict) -> Path:
    import tomli_w

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    ws = Path(tempfile.mkdtemp(prefix="adaptloop-ray-")) / "ws"
    subprocess.run([*EXE, "init", str(ws)], check=True, capture_output=True)
    cfg = ws / "adaptloop.toml"
    settings = tomllib.loads(cfg.read_text())
    settings["search"].update(search)
    cfg.write_text(tomli_w.dumps(settings))
    return ws


def cold_start(label: str, dataset: str, budget: str, search: dict, killer: Any = None) -> dict:
    ws = workspace(search)
    t0 = time.monotonic()
    new = subprocess.run([*EXE, "new", f"classify {dataset} messages by intent", "--data",
                          str(DATASETS / dataset / "train.jsonl"), "--budget", budget, "--json", "-w", str(ws)],
                         capture_output=True, text=True)
    wall = time.monotonic() - t0
    if new.returncode != 0:
        sys.exit(f"{label}: adaptloop new failed ({new.returncode}):\n{new.stderr[-3000:]}")
    ev = subprocess.run([*EXE, "eval", "--data", str(DATASETS / dataset / "test.jsonl"), "--json", "-w", str(ws)],
                        check=True, capture_output=True, text=True)
    r, e = json.loads(new.stdout), json.loads(ev.stdout)
    out = {"label": label, "search": search, "budget": budget, "wall_seconds": round(wall, 1),
           "workspace": str(ws), "winner": r["winner"]["node"], "test_accuracy": e["accuracy"],
           "nodes": [{"name": n["name"], "strategy": n["pipeline"]["strategy"], "status": n["status"],
                      "train_seconds": n.get("train_seconds"), "dev_accuracy": n["dev"].get("accuracy"),
                      "error": (n.get("eval") or {}).get("error")} for n in r["nodes"]]}
    if killer is not None:
        runs = json.loads(subprocess.run([*EXE, "runs", "--json", "-w", str(ws)], check=True,
                                         capture_output=True, text=True).stdout)["runs"][0]
        killed_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(killer.killed_at)) if killer.killed_at else "9"
        out["killed"] = {"node": killer.killed[0] if killer.killed else None,
                         "decisions_after": [f"{d['kind']}: {d['reason']}"[:240] for d in runs["decisions"]
                                             if d["at"] >= killed_at]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="banking77")
    ap.add_argument("--budget", default="3m")
    ap.add_argument("--kill-after", type=float, default=5.0, help="seconds into the trial before its worker dies")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from tests.ray_cluster import RayCluster, TrialWatch

    results = [cold_start("local processes", args.dataset, args.budget, {"executor": "local", "workers": 2})]
    cluster = RayCluster(cpus=2).start()
    try:
        ray = {"executor": "ray", "ray_address": cluster.address, "workers": 2}
        results.append(cold_start("ray, 2-CPU local cluster", args.dataset, args.budget, ray))
        with TrialWatch(args.kill_after) as killer:
            results.append(cold_start("ray, a worker killed", args.dataset, args.budget, ray, killer))
    finally:
        cluster.stop()
    print(f"{'run':28} {'nodes':>5} {'failed':>6} {'wall s':>7} {'test acc':>8}  winner")
    for r in results:
        failed = sum(n["status"] == "failed" for n in r["nodes"])
        print(f"{r['label']:28} {len(r['nodes']):>5} {failed:>6} {r['wall_seconds']:>7} "
              f"{r['test_accuracy']:>8.4f}  {r['winner']}")
    if results[-1].get("killed"):
        print("killed:", json.dumps(results[-1]["killed"], indent=1))
    out = args.out or REPO / "benchmarks" / "results" / f"ray-executor-{args.dataset}.json"
    out.write_text(json.dumps({"dataset": args.dataset, "budget": args.budget, "runs": results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
