"""Planted confusable pair: does the first intervention after diagnosis target it?

    .venv/bin/python benchmarks/planted_pair.py --budget 6m

Takes 20 banking77 intents (all their training examples), relabels a share of two close
intents into each other (card_arrival ↔ card_delivery_estimate by default), runs
`adaptloop new` on that, then reads the experiment graph: the baseline's top confusable
pair, the first intervention proposed after that diagnosis, and the accuracy on the pair's
examples of the clean test split, for the baseline, that first intervention and the winner.
Writes benchmarks/results/planted-pair.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))


def load(split: str) -> list[dict]:
    with (DATASETS / "banking77" / f"{split}.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", default="card_arrival")
    ap.add_argument("--b", default="card_delivery_estimate")
    ap.add_argument("--share", type=float, default=0.3, help="share of each intent relabelled as the other")
    ap.add_argument("--intents", type=int, default=20)
    ap.add_argument("--budget", default="6m")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "planted-pair.json")
    a = ap.parse_args()
    train, test = load("train"), load("test")
    others = sorted({r["label"] for r in train} - {a.a, a.b})[: a.intents - 2]
    keep = {a.a, a.b, *others}
    rows = [dict(r) for r in train if r["label"] in keep]
    rng = random.Random(0)
    planted = 0
    for src, dst in ((a.a, a.b), (a.b, a.a)):
        idx = [i for i, r in enumerate(rows) if r["label"] == src and not r.get("planted")]
        for i in rng.sample(idx, int(a.share * len(idx))):
            rows[i] = {"text": rows[i]["text"], "label": dst, "planted": True}
            planted += 1
    work = Path(tempfile.mkdtemp(prefix="adaptloop-planted-"))
    data = work / "train.jsonl"
    data.write_text("".join(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in rows))
    ws = work / "ws"
    exe = [sys.executable, "-m", "adaptloop.cli"]
    subprocess.run([*exe, "init", str(ws)], check=True)
    t0 = time.monotonic()
    new = subprocess.run([*exe, "new", "route banking messages to the right intent", "--data", str(data),
                          "--budget", a.budget, "--json", "-w", str(ws)], capture_output=True, text=True)
    if new.returncode != 0:
        sys.exit(f"adaptloop new failed ({new.returncode}):\n{new.stderr[-3000:]}")
    wall = time.monotonic() - t0

    from adaptloop.store.db import Node
    from adaptloop.train import load_trained
    from adaptloop.workspace import Workspace

    w = Workspace.open(ws)
    run_id = json.loads(new.stdout)["run_id"]
    nodes = w.store.nodes(run_id)
    findings = w.store.findings(run_id)
    base = nodes[0]
    pairs = [f for f in findings if f.node_id == base.id and f.kind == "confusable_pair"]
    first = nodes[1] if len(nodes) > 1 else None
    pair_tests = [r for r in test if r["label"] in (a.a, a.b)]
    scoped = [r for r in test if r["label"] in keep]

    def accuracy(node: Node) -> dict:
        model = load_trained(w.artifacts.path(node.model_artifact))
        probs = model.predict_proba([r["text"] for r in scoped])
        pred = [model.labels[i] for i in probs.argmax(1)]
        hit = [p == r["label"] for p, r in zip(pred, scoped)]
        on_pair = [h for h, r in zip(hit, scoped) if r["label"] in (a.a, a.b)]
        return {"node": node.name, "intervention": node.intervention, "pair_accuracy": sum(on_pair) / len(on_pair),
                "test_accuracy": sum(hit) / len(hit), "dev": node.dev_metrics}

    winner = json.loads(new.stdout)["winner"]
    win_node = next(n for n in nodes if n.id == winner["node_id"]) if winner else None
    first_text = json.dumps({"intervention": first.intervention, "pipeline": first.pipeline}) if first else ""
    report = {
        "planted": {"a": a.a, "b": a.b, "share": a.share, "relabelled": planted, "intents": len(keep),
                    "train_rows": len(rows), "pair_test_rows": len(pair_tests)},
        "budget": a.budget, "wall_seconds": round(wall, 1), "workspace": str(ws),
        "baseline_top_pair": pairs[0].target["labels"] if pairs else None,
        "baseline_top_pair_summary": pairs[0].summary if pairs else None,
        "first_intervention": {"name": first.name, "move": first.move, "finding": first.finding,
                               "intervention": first.intervention, "reason": first.reason,
                               "pipeline": first.pipeline} if first else None,
        "first_targets_planted_pair": bool(first and a.a in first_text and a.b in first_text),
        "accuracy": {"baseline": accuracy(base),
                     "first_intervention": accuracy(first) if first and first.model_artifact else None,
                     "winner": accuracy(win_node) if win_node and win_node.model_artifact else None},
        "nodes": [{"id": n.id, "name": n.name, "parent_id": n.parent_id, "move": n.move,
                   "intervention": n.intervention, "status": n.status,
                   "dev_accuracy": (n.dev_metrics or {}).get("accuracy")} for n in nodes],
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: report[k] for k in ("baseline_top_pair", "first_intervention", "first_targets_planted_pair",
                                             "accuracy")}, indent=1, default=str))


if __name__ == "__main__":
    main()
