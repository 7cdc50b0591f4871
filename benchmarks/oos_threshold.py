"""How to set the abstention threshold of a task with an out-of-scope label (clinc150's ``oos``).

    .venv/bin/python benchmarks/oos_threshold.py [--dataset clinc150] [--mpnet] [--cache DIR]

90% of train.jsonl fits each model (shuffled with seed 0), the other 10% is dev; test.jsonl scores.
Models: frozen all-MiniLM-L6-v2 + logistic regression, with ``--mpnet`` frozen all-mpnet-base-v2 +
LR, adaptloop's n-gram model, and the average of them. Rules for the threshold under which a model
answers the out-of-scope label: none; the one maximising dev accuracy (quantiles of the top
probability as the grid); and adaptloop's (``train/threshold.py::scope_threshold``), which sends at
most a share of the in-scope dev examples there, for several shares. Prints test accuracy, in-scope
accuracy and out-of-scope recall per model and rule; writes benchmarks/results/oos-threshold-<dataset>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))
ENCODERS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "mpnet": "sentence-transformers/all-mpnet-base-v2"}
SHARES = (0.0025, 0.005, 0.01, 0.02)


def main() -> None:
    from adaptloop.data.spec import OUT_OF_SCOPE_NAMES
    from adaptloop.train import FitContext, trainer_for
    from adaptloop.train.encoder import EmbeddingCache, set_threads
    from adaptloop.train.logreg import fit_logreg
    from adaptloop.train.threshold import adjust, scope_threshold
    from adaptloop.types import Example, Pipeline, TaskSpec

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="clinc150")
    ap.add_argument("--mpnet", action="store_true", help="also frozen all-mpnet-base-v2 (minutes to embed on CPU)")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "adaptloop" / "bench-embeddings")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    set_threads(0)
    rows = {s: [json.loads(line) for line in (DATASETS / a.dataset / f"{s}.jsonl").open(encoding="utf-8")]
            for s in ("train", "test")}
    train = rows["train"]
    random.Random(0).shuffle(train)
    dev, fit, test = train[: len(train) // 10], train[len(train) // 10:], rows["test"]
    labels = sorted({r["label"] for r in train})
    oos = next(lab for lab in labels if lab.lower() in OUT_OF_SCOPE_NAMES)
    ids = {lab: i for i, lab in enumerate(labels)}
    o = ids[oos]
    y = {"dev": np.array([ids[r["label"]] for r in dev]), "test": np.array([ids[r["label"]] for r in test])}
    texts = {"fit": [r["text"] for r in fit], "dev": [r["text"] for r in dev], "test": [r["text"] for r in test]}
    cache = EmbeddingCache(a.cache)
    probs: dict[str, dict[str, np.ndarray]] = {}
    for name in ["minilm", *(["mpnet"] if a.mpnet else [])]:
        x = {k: cache.get(ENCODERS[name], v) for k, v in texts.items()}
        clf = fit_logreg(x["fit"], np.array([ids[r["label"]] for r in fit]), c=10.0, seed=0)
        probs[name] = {k: clf.predict_proba(x[k]) for k in ("dev", "test")}
    spec = TaskSpec(name=a.dataset, prompt="classify", family="classification", labels=tuple(labels),
                    primary_metric="accuracy", out_of_scope_label=oos)
    model, _ = trainer_for("lexical").fit(spec, Pipeline("raw", "lexical", ENCODERS["minilm"]),
                                          [Example(text=r["text"], label=r["label"]) for r in fit], [], FitContext())
    probs["n-gram"] = {k: model.predict_proba(texts[k]) for k in ("dev", "test")}
    probs["average"] = {k: np.mean([p[k] for p in probs.values()], axis=0) for k in ("dev", "test")}
    zeros = np.zeros(len(labels))

    def scores(p: np.ndarray, t: float, split: str) -> dict[str, float]:
        pred, yy = adjust(p, zeros, o, t).argmax(1), y[split]
        ins = yy != o
        return {"accuracy": float((pred == yy).mean()), "in_scope_accuracy": float((pred[ins] == yy[ins]).mean()),
                "oos_recall": float((pred[~ins] == o).mean())}

    def dev_accuracy_threshold(p: np.ndarray) -> float:
        q = np.unique(np.quantile(p.max(1), np.linspace(0.01, 0.6, 30)))
        grid = [0.0, *sorted(set(q.tolist()) | set(((q[:-1] + q[1:]) / 2).tolist()))]
        return max(grid, key=lambda t: (scores(p, t, "dev")["accuracy"], -t))

    out = {"dataset": a.dataset, "date": time.strftime("%Y-%m-%d"), "n_fit": len(fit), "n_dev": len(dev),
           "dev_out_of_scope": int((y["dev"] == o).sum()), "test_out_of_scope": int((y["test"] == o).sum()),
           "models": {}}
    print(f"{'model':<9} {'rule':<22} {'t':>6} {'test acc':>9} {'in-scope':>9} {'oos rec':>8}")
    for name, p in probs.items():
        rules = {"none": 0.0, "max dev accuracy": dev_accuracy_threshold(p["dev"])}
        rules |= {f"in-scope share {s}": scope_threshold(p["dev"], y["dev"], o, s) for s in SHARES}
        out["models"][name] = {}
        for rule, t in rules.items():
            s = scores(p["test"], t, "test")
            out["models"][name][rule] = {"threshold": t, "test": s, "dev": scores(p["dev"], t, "dev")}
            print(f"{name:<9} {rule:<22} {t:>6.3f} {s['accuracy']:>9.4f} {s['in_scope_accuracy']:>9.4f} "
                  f"{s['oos_recall']:>8.3f}")
    dest = a.out or REPO / "benchmarks" / "results" / f"oos-threshold-{a.dataset}.json"
    dest.write_text(json.dumps(out, indent=1))
    print(f"written to {dest}")


if __name__ == "__main__":
    main()
