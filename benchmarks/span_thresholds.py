"""Per-type span thresholds tuned on dev, for every tagger and tagger ensemble of one extraction search,
scored on a dataset's official test split with and without them.

    .venv/bin/python benchmarks/span_thresholds.py --workspace WS --dataset wnut17

Reads the finished `tagger` and `ensemble` nodes of the workspace's latest cold start (a run of
`benchmarks/extraction.py` keeps its workspace) and the run's own dev split; tunes thresholds on all of
dev as the `span-threshold` move does (`train.span_threshold.tune_thresholds`), then scores test. Nothing
is tuned on test. Writes benchmarks/results/span-thresholds-DATASET.json.
"""

from __future__ import annotations

import argparse
import json
import os
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

    from adaptloop.agent.prepare import recipe_book
    from adaptloop.data.sources import load_extraction
    from adaptloop.evaluate.entities import entity_metrics
    from adaptloop.train import load_trained
    from adaptloop.train.span_threshold import tune_thresholds
    from adaptloop.workspace import Workspace

    ws = Workspace.open(a.workspace)
    run = [r for r in ws.store.runs() if r.kind == "coldstart"][-1]
    labels = list(ws.store.run_state(run).spec.labels)
    dev = list(recipe_book(ws, run).dev)
    test = load_extraction(DATASETS / a.dataset / "test.jsonl").examples
    parts = {"dev": ([e.text for e in dev], [list(e.spans) for e in dev]),
             "test": ([e.text for e in test], [list(e.spans) for e in test])}

    def scored(part: str, preds: list, thr: dict) -> dict:
        texts, gold = parts[part]
        kept = [[(p["start"], p["end"], p["label"]) for p in row if p["score"] >= thr.get(p["label"], 0.0)]
                for row in preds]
        m = entity_metrics(texts, gold, kept)
        return {k: round(m[k], 4) for k in ("f1", "precision", "recall")}

    rows = []
    for n in ws.store.nodes(run.id):
        if n.status != "done" or n.pipeline["strategy"] not in ("tagger", "ensemble") or not n.model_artifact:
            continue
        model = load_trained(ws.artifacts.path(n.model_artifact))
        preds = {k: model.predict_spans(texts, thresholds={}) for k, (texts, _) in parts.items()}
        thr, _ = tune_thresholds(*parts["dev"], preds["dev"], labels)
        rows.append({"node": n.name, "strategy": n.pipeline["strategy"], "thresholds": thr,
                     "dev": scored("dev", preds["dev"], {}),
                     "dev_thresholded_in_sample": scored("dev", preds["dev"], thr),
                     "test": scored("test", preds["test"], {}), "test_thresholded": scored("test", preds["test"], thr)})
        print(json.dumps(rows[-1]), flush=True)
    out = a.out or REPO / "benchmarks" / "results" / f"span-thresholds-{a.dataset}.json"
    out.write_text(json.dumps({"dataset": a.dataset, "workspace": str(a.workspace), "run": run.id, "rows": rows},
                              indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
