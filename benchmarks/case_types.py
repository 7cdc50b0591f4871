"""Case on the token types: one tagger trained with and one without, same data, same time.

    .venv/bin/python benchmarks/case_types.py --dataset wnut17 --seconds 360

MiniLM's tokenizer lowercases, so an entity's capital letters never reach the model. With
``case_types`` (``train/tagger.py``) each subword's token type says whether it holds a capital
letter. This script trains the MiniLM tagger twice on all of train.jsonl, with the same seed and
wall deadline, once with ``case_types`` and once without; dev (early stopping, best state) is the
dataset's validation.jsonl; both are scored on test.jsonl (entity F1, precision, recall).
Writes benchmarks/results/case-types-DATASET.json. Time: twice ``--seconds`` plus scoring.
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
    ap.add_argument("--dataset", default="wnut17", choices=["wnut17", "presidio_pii"])
    ap.add_argument("--seconds", type=float, default=360.0, help="wall deadline of each tagger's training")
    ap.add_argument("--encoder", default="sentence-transformers/all-MiniLM-L6-v2")
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
    types = sorted({sp[2] for e in train for sp in e.spans})
    spec = TaskSpec(name=a.dataset, prompt="extract entities", family="extraction", labels=tuple(types),
                    primary_metric="f1")
    rows = []
    for case in (False, True):
        pipe = Pipeline("raw", "tagger", encoder=a.encoder, hparams={"case_types": case}, seed=0)
        t0 = time.monotonic()
        model, res = TaggerTrainer().fit(spec, pipe, train, dev, FitContext(deadline=time.monotonic() + a.seconds))
        took = time.monotonic() - t0
        found = model.predict_spans([e.text for e in test])
        pred = [[(d["start"], d["end"], d["label"]) for d in row] for row in found]
        m = entity_metrics([e.text for e in test], [[tuple(s) for s in e.spans] for e in test], pred)
        rows.append({"case_types": case, "used": model.case, "train_seconds": round(took, 1),
                     "dev_f1": round(res.dev_metrics["f1"], 4), "chosen": res.chosen,
                     "test": {k: round(m[k], 4) for k in ("f1", "precision", "recall")}})
        print(json.dumps(rows[-1]), flush=True)
    out = a.out or REPO / "benchmarks" / "results" / f"case-types-{a.dataset}.json"
    out.write_text(json.dumps({"dataset": a.dataset, "encoder": a.encoder, "seconds": a.seconds,
                               "machine": f"{os.cpu_count()} CPU cores", "date": time.strftime("%Y-%m-%d"),
                               "rows": rows}, indent=1))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
