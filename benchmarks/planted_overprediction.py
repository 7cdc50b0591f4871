"""Planted over-prediction: does the diagnosis name it, and does the agent's fix raise precision?

    .venv/bin/python benchmarks/planted_overprediction.py --budget 15m

Builds a bad training file from presidio_pii's train split: every entity-free sentence is
removed and a share of the sentences get a noisy extra span (a random ordinary word
labelled as an entity type). The clean validation split is the gold file (`--eval-data`:
frozen eval set and dev). `adaptloop new` runs on that; then the script reads the graph:
the baseline's findings, the first intervention after its diagnosis, and entity precision
and recall on the clean official test split for the baseline, that first fix and the
winner. Writes benchmarks/results/planted-overprediction.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))
EXE = [sys.executable, "-m", "adaptloop.cli"]


def load(split: str) -> list[dict]:
    with (DATASETS / "presidio_pii" / f"{split}.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def plant(rows: list[dict], share: float, seed: int) -> tuple[list[dict], int, int]:
    """Drop entity-free rows; add one noisy span over an ordinary word to ``share`` of the rest."""
    rng = random.Random(seed)
    types = ["PERSON", "ORGANIZATION", "GPE"]
    out, dropped, noisy = [], 0, 0
    for r in rows:
        if not r["spans"]:
            dropped += 1
            continue
        spans = [dict(s) for s in r["spans"]]
        if rng.random() < share:
            free = [m for m in re.finditer(r"[A-Za-z]{4,}", r["text"])
                    if not any(m.start() < s["end"] and s["start"] < m.end() for s in spans)]
            if free:
                m = rng.choice(free)
                spans.append({"start": m.start(), "end": m.end(), "label": rng.choice(types), "value": m.group()})
                noisy += 1
        out.append({"text": r["text"], "spans": sorted(spans, key=lambda s: s["start"])})
    return out, dropped, noisy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--share", type=float, default=0.4, help="share of sentences given a noisy extra span")
    ap.add_argument("--budget", default="15m")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "planted-overprediction.json")
    a = ap.parse_args()
    rows, dropped, noisy = plant(load("train"), a.share, a.seed)
    work = Path(tempfile.mkdtemp(prefix="adaptloop-overpred-"))
    data = work / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ws = work / "ws"
    subprocess.run([*EXE, "init", str(ws)], check=True, capture_output=True)
    t0 = time.monotonic()
    new = subprocess.run([*EXE, "new", "build me a PII detection model", "--data", str(data), "--eval-data",
                          str(DATASETS / "presidio_pii" / "validation.jsonl"), "--budget", a.budget, "--json",
                          "-w", str(ws)], capture_output=True, text=True)
    if new.returncode != 0:
        sys.exit(f"adaptloop new failed ({new.returncode}):\n{new.stderr[-3000:]}")
    wall = time.monotonic() - t0
    result = json.loads(new.stdout)

    from adaptloop.agent.predict import score_rows
    from adaptloop.data.sources import load_extraction
    from adaptloop.evaluate.rows import metrics_of
    from adaptloop.store.db import Node
    from adaptloop.train import load_trained
    from adaptloop.types import TaskSpec
    from adaptloop.workspace import Workspace

    w = Workspace.open(ws)
    run_id = result["run_id"]
    spec = TaskSpec.from_dict(result["spec"])
    nodes = w.store.nodes(run_id)
    test = load_extraction(DATASETS / "presidio_pii" / "test.jsonl").examples
    base = nodes[0]
    findings = [f for f in w.store.findings(run_id) if f.node_id == base.id]
    first = next((n for n in nodes[1:] if n.parent_id == base.id), None)

    def on_test(node: Node | None) -> dict | None:
        if node is None or not node.model_artifact:
            return None
        m = metrics_of(spec, score_rows(load_trained(w.artifacts.path(node.model_artifact)), test))
        return {"node": node.name, "intervention": node.intervention, "precision": round(m["precision"], 4),
                "recall": round(m["recall"], 4), "f1": round(m["f1"], 4), "n_pred": m["n_pred"],
                "n_gold": m["n_gold"], "dev": node.dev_metrics}

    winner = next((n for n in nodes if result["winner"] and n.id == result["winner"]["node_id"]), None)
    scores = {"baseline": on_test(base), "first_fix": on_test(first), "winner": on_test(winner)}
    fix = scores["first_fix"]
    report = {
        "planted": {"entity_free_dropped": dropped, "noisy_spans": noisy, "train_rows": len(rows),
                    "share": a.share, "seed": a.seed},
        "budget": a.budget, "wall_seconds": round(wall, 1), "workspace": str(ws),
        "baseline_findings": [{"kind": f.kind, "summary": f.summary, "severity": f.severity,
                               "suggests": f.suggests} for f in findings],
        "names_over_prediction": any(f.kind in ("over_prediction", "spurious_entities") for f in findings),
        "first_fix": {"name": first.name, "move": first.move, "finding": first.finding,
                      "intervention": first.intervention, "reason": first.reason} if first else None,
        "test": scores,
        "fix_raises_precision": bool(fix and fix["precision"] > scores["baseline"]["precision"]),
        "fix_recall_loss": round(scores["baseline"]["recall"] - fix["recall"], 4) if fix else None,
        "nodes": [{"id": n.id, "name": n.name, "parent_id": n.parent_id, "move": n.move, "status": n.status,
                   "intervention": n.intervention, "dev": n.dev_metrics} for n in nodes],
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: report[k] for k in ("names_over_prediction", "first_fix", "test", "fix_raises_precision",
                                             "fix_recall_loss")}, indent=1, default=str))


if __name__ == "__main__":
    main()
