"""The O tag's loss weight: one tagger trained unweighted and weighted from the data, same seed, same time.

    .venv/bin/python benchmarks/o_weight.py --dataset wnut17 --seconds 330

``train/tagger.py`` weighs the O tag's loss by the square root of the entity subwords' share over
O's (``o_weight``; 0.22 on wnut17, where O is 95% of the subwords). This script trains each
encoder's tagger twice on all of train.jsonl, with the same seed, once with ``o_weight`` 1 (no
weight) and once from the data. The plan is sized as in a 20-minute search (a 900 s deadline) and
the fit is stopped after ``--seconds``, as the search's trailing checkpoint would stop it; dev
(early stopping, best state) is the first 300 sentences of validation.jsonl. For each: the update
at which dev F1 first passes 0.05, the best dev F1 and when, and entity F1 / precision / recall on
test.jsonl. Writes benchmarks/results/o-weight-DATASET.json. Time: four times ``--seconds`` plus
scoring.
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
ENCODERS = ("intfloat/multilingual-e5-small", "sentence-transformers/all-MiniLM-L6-v2")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="wnut17", choices=["wnut17", "presidio_pii"])
    ap.add_argument("--seconds", type=float, default=330.0, help="when each fit is stopped (its plan: 900 s)")
    ap.add_argument("--encoders", nargs="+", default=list(ENCODERS))
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()

    from adaptloop.data.sources import load_extraction
    from adaptloop.evaluate.entities import entity_metrics
    from adaptloop.train.base import FitContext
    from adaptloop.train.encoder import set_threads
    from adaptloop.train.tagger import TaggerTrainer
    from adaptloop.types import Pipeline, TaskSpec

    set_threads(0)
    train, dev, test = (load_extraction(DATASETS / a.dataset / f"{s}.jsonl").examples
                        for s in ("train", "validation", "test"))
    dev = dev[:300]
    types = sorted({sp[2] for e in train for sp in e.spans})
    spec = TaskSpec(name=a.dataset, prompt="extract entities", family="extraction", labels=tuple(types),
                    primary_metric="f1")
    rows = []
    for encoder in a.encoders:
        for weight in (1.0, None):
            pipe = Pipeline("raw", "tagger", encoder=encoder, hparams={"o_weight": weight}, seed=0)
            t0 = time.monotonic()
            ctx = FitContext(deadline=t0 + 900.0, cutoff=lambda t0=t0: t0 + a.seconds)
            model, res = TaggerTrainer().fit(spec, pipe, train, dev, ctx)
            took = time.monotonic() - t0
            found = model.predict_spans([e.text for e in test])
            pred = [[(d["start"], d["end"], d["label"]) for d in row] for row in found]
            m = entity_metrics([e.text for e in test], [[tuple(s) for s in e.spans] for e in test], pred)
            first = next((p for p in res.curve if p["dev_f1"] > 0.05), None)
            best = max(res.curve, key=lambda p: p["dev_f1"], default=None)
            rows.append({"encoder": encoder, "o_weight": "from the data" if weight is None else weight,
                         "train_seconds": round(took, 1),
                         "first_entities": first and {"step": first["step"], "seconds": round(first["seconds"])},
                         "best_dev": best and {"f1": round(best["dev_f1"], 4), "step": best["step"],
                                               "seconds": round(best["seconds"])},
                         "test": {k: round(m[k], 4) for k in ("f1", "precision", "recall")}})
            print(json.dumps(rows[-1]), flush=True)
    out = a.out or REPO / "benchmarks" / "results" / f"o-weight-{a.dataset}.json"
    out.write_text(json.dumps({"dataset": a.dataset, "seconds": a.seconds, "plan_seconds": 900.0,
                               "machine": f"{os.cpu_count()} CPU cores", "date": time.strftime("%Y-%m-%d"),
                               "rows": rows}, indent=1))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
