"""Extraction cold start on a public dataset, scored on its official test split.

    .venv/bin/python benchmarks/extraction.py --dataset presidio_pii --budget 20m
    .venv/bin/python benchmarks/extraction.py --dataset wnut17 --budget 30m

Runs exactly what a user runs — `adaptloop new PROMPT --data train.jsonl`, then
`adaptloop eval --data test.jsonl` — in a fresh workspace, and writes the nodes, the
winner, entity precision / recall / F1 on test (per type too) and the wall time to
benchmarks/results/extraction-DATASET.json. Extra `--set key=value` lines go into the
workspace's adaptloop.toml (e.g. `--set train.extraction_ladder='["..."]'`).
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
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))
PROMPTS = {"presidio_pii": "build me a PII detection model",
           "wnut17": "extract person, location, group, corporation, product and creative-work names from tweets"}
EXE = [sys.executable, "-m", "adaptloop.cli"]


def cli(*args: str) -> dict:
    """Run one CLI command with --json; exit with its stderr on failure."""
    p = subprocess.run([*EXE, *args, "--json"], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"adaptloop {args[0]} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout)


def configure(path: Path, settings: list[str]) -> None:
    """Write ``section.key=value`` lines into a workspace's adaptloop.toml."""
    import tomli_w
    import tomllib

    conf = tomllib.loads(path.read_text(encoding="utf-8"))
    for line in settings:
        key, _, raw = line.partition("=")
        section, _, name = key.partition(".")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare string
        conf.setdefault(section, {})[name] = value
    path.write_text(tomli_w.dumps(conf), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=sorted(PROMPTS), default="presidio_pii")
    ap.add_argument("--budget", default="20m")
    ap.add_argument("--eval-data", type=Path, default=None, help="optional gold file for the eval set and dev")
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a setting for the workspace's adaptloop.toml; VALUE is TOML (strings unquoted ok)")
    a = ap.parse_args()
    ws = a.workspace or Path(tempfile.mkdtemp(prefix=f"adaptloop-{a.dataset}-")) / "ws"
    subprocess.run([*EXE, "init", str(ws)], check=True, capture_output=True)
    configure(ws / "adaptloop.toml", a.set)
    t0 = time.monotonic()
    extra = ["--eval-data", str(a.eval_data)] if a.eval_data else []
    new = cli("new", PROMPTS[a.dataset], "--data", str(DATASETS / a.dataset / "train.jsonl"), *extra,
              "--budget", a.budget, "-w", str(ws))
    wall = time.monotonic() - t0
    test = cli("eval", "--data", str(DATASETS / a.dataset / "test.jsonl"), "-w", str(ws))
    report = {
        "dataset": a.dataset, "budget": a.budget, "wall_seconds": round(wall, 1), "workspace": str(ws),
        "prompt": PROMPTS[a.dataset], "family": new["spec"]["family"],
        "test": {k: test[k] for k in ("f1", "precision", "recall", "macro_f1", "n_gold", "n_pred", "n")},
        "test_per_type": test["per_type"], "winner": new["winner"], "stop_reason": new["stop_reason"],
        "curation": new["curation"],
        "nodes": [{"id": n["id"], "name": n["name"], "parent_id": n["parent_id"], "move": n["move"],
                   "intervention": n["intervention"], "status": n["status"], "dev": n["dev"],
                   "train_seconds": n["train_seconds"], "encoder": n["pipeline"]["encoder"],
                   "strategy": n["pipeline"]["strategy"], "recipe": n["pipeline"]["recipe"]} for n in new["nodes"]],
    }
    out = a.out or REPO / "benchmarks" / "results" / f"extraction-{a.dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: report[k] for k in ("dataset", "wall_seconds", "test", "stop_reason")}, indent=1))


if __name__ == "__main__":
    main()
