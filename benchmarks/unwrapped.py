"""The models inside abstaining versions, scored without their threshold, on a dataset's test split.

    .venv/bin/python benchmarks/unwrapped.py --workspace WS --dataset clinc150 v2 v1 [--out FILE]

A task with an out-of-scope label serves a threshold model (``agent/abstain.py``) around the model
the search or the distillation made; this scores that inner model (the version's ``base`` folder) as
it would serve without abstention, so a run shows what abstention changed on the same models.
Prints accuracy, in-scope accuracy and out-of-scope recall per version; writes --out when given.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))


def main() -> None:
    from adaptloop.evaluate.metrics import classification_metrics
    from adaptloop.store import registry
    from adaptloop.train import load_trained
    from adaptloop.workspace import Workspace

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--dataset", default="clinc150")
    ap.add_argument("versions", nargs="+", help="versions whose model abstains (v1, production…)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    ws = Workspace.open(a.workspace)
    rows = [json.loads(line) for line in (DATASETS / a.dataset / "test.jsonl").open(encoding="utf-8")]
    texts, gold = [r["text"] for r in rows], [r["label"] for r in rows]
    out = {"workspace": str(a.workspace), "dataset": a.dataset, "versions": {}}
    for ref in a.versions:
        mv = registry.resolve(ws.store, ref)
        folder = ws.artifacts.path(mv.artifact)
        meta = json.loads((folder / "adaptloop_model.json").read_text(encoding="utf-8"))
        if meta.get("kind") != "threshold":
            raise SystemExit(f"{ref} does not abstain (its model is a {meta.get('kind', 'classifier')})")
        model = load_trained(folder / "base")
        pred = [model.labels[i] for i in model.predict_proba(texts).argmax(1)]
        s = classification_metrics(gold, pred, labels=sorted(set(gold) | set(model.labels)),
                                   out_of_scope_label=meta["abstain"])
        out["versions"][ref] = {"threshold": meta["threshold"],
                                **{k: s[k] for k in ("accuracy", "in_scope_accuracy", "oos_recall")}}
        print(ref, json.dumps(out["versions"][ref]), flush=True)
    if a.out:
        a.out.write_text(json.dumps(out, indent=1))
        print(f"written to {a.out}")


if __name__ == "__main__":
    main()
