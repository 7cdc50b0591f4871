"""Taggers of one extraction search, alone and averaged, scored on a dataset's official test split.

    .venv/bin/python benchmarks/tagger_ensemble.py --workspace WS --dataset presidio_pii

Reads the finished tagger nodes of the workspace's latest cold start (a run of
`benchmarks/extraction.py` keeps its workspace), scores each on test.jsonl, then the equal-weight
averages of their tag probabilities (`train.ensemble.TaggerEnsemble`): the members the doctrine
picks (`agent.doctrine.tagger_members`: the best tagger of each encoder, at most 3, each at least
85% of the best one's dev F1), the top 2 and 3 on dev on the best one's encoder, and the best one
with every tagger on the other encoders. Dev F1 is the node's own;
nothing here is tuned on test. Writes benchmarks/results/tagger-ensemble-DATASET.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()

    from adaptloop.agent.doctrine import tagger_members
    from adaptloop.data.sources import load_extraction
    from adaptloop.evaluate.entities import entity_metrics
    from adaptloop.search import graph
    from adaptloop.search.interventions import TAGGERS
    from adaptloop.train import load_trained
    from adaptloop.train.ensemble import TaggerEnsemble
    from adaptloop.workspace import Workspace

    ws = Workspace.open(a.workspace)
    run = [r for r in ws.store.runs() if r.kind == "coldstart"][-1]
    nodes = [n for n in ws.store.nodes(run.id) if n.status == "done" and n.dev_metrics
             and n.pipeline["strategy"] in (*TAGGERS, "frozen-tagger") and n.model_artifact]
    test = load_extraction(DATASETS / a.dataset / "test.jsonl").examples
    texts, gold = [e.text for e in test], [list(e.spans) for e in test]

    def score(model) -> dict:
        t0 = time.monotonic()
        pred = [[(d["start"], d["end"], d["label"]) for d in row] for row in model.predict_spans(texts)]
        m = entity_metrics(texts, gold, pred)
        return {k: round(m[k], 4) for k in ("f1", "precision", "recall")} | {"seconds": round(time.monotonic() - t0, 1)}

    models = {n.name: load_trained(ws.artifacts.path(n.model_artifact)) for n in nodes}
    rows = []
    for n in sorted(nodes, key=lambda n: -n.dev_metrics["f1"]):
        rows.append({"model": n.name, "encoder": n.pipeline["encoder"], "recipe": n.pipeline["recipe"],
                     "dev_f1": round(n.dev_metrics["f1"], 4), "test": score(models[n.name])})
        print(json.dumps(rows[-1]), flush=True)
    gnodes = [graph.GraphNode(name=n.name, score=n.dev_metrics["f1"], parent=None,
                              pipeline=n.pipeline, model_path="x", order=n.id) for n in nodes]
    picks = {"doctrine (the best of each encoder)": [g.name for g in tagger_members(gnodes)]}
    best_enc = rows[0]["encoder"] if rows else None
    same = [r["model"] for r in rows if r["encoder"] == best_enc]
    other = [r["model"] for r in rows if r["encoder"] != best_enc]
    for k in (2, 3):
        if len(same) >= k:
            picks[f"the top {k} on {best_enc.split('/')[-1]}"] = same[:k]
    if same and other:
        picks["the best, and every tagger on the other encoders"] = [same[0], *other]
    for label, names in picks.items():
        if len(names) < 2:
            continue
        rows.append({"model": f"ensemble ({label})", "members": names,
                     "test": score(TaggerEnsemble([models[n] for n in names]))})
        print(json.dumps(rows[-1]), flush=True)
    out = a.out or REPO / "benchmarks" / "results" / f"tagger-ensemble-{a.dataset}.json"
    out.write_text(json.dumps({"dataset": a.dataset, "workspace": str(a.workspace), "run": run.id,
                               "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
