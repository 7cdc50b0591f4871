"""A fast node of a cold start, before and after its cheap members are refitted with dev, on a test split.

    .venv/bin/python benchmarks/refit_served.py --workspace WS --dataset banking77 --node ensemble-3 [--out FILE]

When a cold start's winner is slower than ``[serve] min_throughput``, what serves may be one of the
search's fast nodes (``agent/distill.py::fast_node``); before competing on the frozen eval set,
a node without a refit gets its frozen and n-gram members refitted on train + dev
(``agent/distill.py::refit_cheap``, the same call `new` makes; it adds a refit node to the workspace's
run). This scores the node as the search fitted it and as refitted, on the dataset's test split, without
abstention: accuracy, and in-scope accuracy and out-of-scope recall for a task with an out-of-scope label.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))


def main() -> None:
    from adaptloop.agent.distill import refit_cheap
    from adaptloop.agent.predict import embedding_cache
    from adaptloop.evaluate.metrics import classification_metrics
    from adaptloop.store.db import Run
    from adaptloop.train import load_trained
    from adaptloop.workspace import Workspace

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, required=True, help="a cold start's workspace (its first run)")
    ap.add_argument("--dataset", default="banking77")
    ap.add_argument("--node", required=True, help="the fast node's name (an ensemble with a fine-tune, a frozen node…)")
    ap.add_argument("--seconds", type=float, default=600.0, help="time the refit may take (half of it, as in `new`)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    ws = Workspace.open(a.workspace)
    run = ws.store.get(Run, 1)
    spec = ws.store.run_state(run).spec
    done = [n for n in ws.store.nodes(run.id) if n.status == "done" and n.model_artifact]
    node = next((n for n in done if n.name == a.node), None)
    if node is None:
        raise SystemExit(f"no finished node '{a.node}' in run {run.id}: {', '.join(n.name for n in done)}")
    t0 = time.monotonic()
    refitted = refit_cheap(ws, run, spec, node, done, a.seconds)
    if refitted is None:
        raise SystemExit(f"'{a.node}' has nothing to refit cheaply (no frozen or n-gram member) or it would not fit")
    seconds = round(time.monotonic() - t0, 1)
    rows = [json.loads(line) for line in (DATASETS / a.dataset / "test.jsonl").open(encoding="utf-8")]
    texts, gold = [r["text"] for r in rows], [r["label"] for r in rows]
    out = {"workspace": str(a.workspace), "dataset": a.dataset, "node": a.node, "refit": refitted.name,
           "refit_seconds": seconds, "notes": refitted.reason, "test": {}}
    for what, n in (("as fitted", node), ("refitted with dev", refitted)):
        model = load_trained(ws.artifacts.path(n.model_artifact), embeddings=embedding_cache(ws.root))
        pred = [model.labels[i] for i in model.predict_proba(texts).argmax(1)]
        s = classification_metrics(gold, pred, labels=sorted(set(gold) | set(model.labels)),
                                   out_of_scope_label=spec.out_of_scope_label)
        out["test"][what] = {k: s[k] for k in ("accuracy", "in_scope_accuracy", "oos_recall") if k in s}
        print(what, json.dumps(out["test"][what]), flush=True)
    print(f"refit in {seconds}s: {refitted.reason}")
    if a.out:
        a.out.write_text(json.dumps(out, indent=1))
        print(f"written to {a.out}")


if __name__ == "__main__":
    main()
