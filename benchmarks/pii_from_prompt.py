"""A PII model from the prompt alone, offline: no --data, no endpoint, then scored on public data.

    .venv/bin/python benchmarks/pii_from_prompt.py --budget 20m

1. `adaptloop new "build me a PII detection model" --yes --budget B`: the task is drafted offline
   (Faker templates: an eval set from its own templates first, then training data), searched, promoted.
2. `adaptloop eval` on ../shared/datasets/presidio_pii/test.jsonl, which the drafter never saw: entity
   micro-F1 and per type. For scale: a model trained on presidio's own train file reached 0.68–0.75.

Writes benchmarks/results/pii-from-prompt.json (the drafted counts, the run's nodes, the frozen eval
score, the public test score per type, wall times).
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))
EXE = [sys.executable, "-m", "adaptloop.cli"]
PROMPT = "build me a PII detection model"


def cli(*args: str) -> dict:
    p = subprocess.run([*EXE, *args, "--json"], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"adaptloop {args[0]} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", default="20m")
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "pii-from-prompt.json")
    a = ap.parse_args()
    ws = a.workspace or Path(tempfile.mkdtemp(prefix="pii-prompt-")) / "ws"
    subprocess.run([*EXE, "init", str(ws)], check=True, capture_output=True)
    t0 = time.monotonic()
    new = cli("new", PROMPT, "--yes", "--budget", a.budget, "-w", str(ws))
    new_wall = time.monotonic() - t0
    t1 = time.monotonic()
    test = cli("eval", "--data", str(DATASETS / "presidio_pii" / "test.jsonl"), "-w", str(ws))
    winner = new.get("winner") or {}
    report = {
        "command": f"benchmarks/pii_from_prompt.py --budget {a.budget}", "prompt": PROMPT,
        "drafted": {k: new["spec"].get(k) for k in ("labels", "definitions", "edge_cases")},
        "curation": new.get("curation"),
        "nodes": [{"name": n["name"], "strategy": n["pipeline"].get("strategy"),
                   "encoder": n["pipeline"].get("encoder"), "status": n["status"],
                   "dev_f1": (n.get("dev") or {}).get("f1")} for n in new["nodes"]],
        "winner": winner.get("node"), "version": new.get("version"),
        "frozen_eval": winner.get("eval"),
        "presidio_test": {k: test.get(k) for k in ("n", "f1", "precision", "recall", "n_gold")},
        "presidio_test_per_type": test.get("per_type"),
        "wall_s": {"new": round(new_wall, 1), "eval": round(time.monotonic() - t1, 1)},
        "workspace": str(ws),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: report[k] for k in ("winner", "frozen_eval", "presidio_test", "wall_s")}, indent=1))


if __name__ == "__main__":
    main()
