"""What a word and character n-gram model adds to sentence-encoder models in an ensemble.

    .venv/bin/python benchmarks/lexical_members.py --dataset banking77 [--mpnet] [--cache DIR]

90% of train.jsonl fits each member (shuffled with seed 0), the other 10% is the dev split that
picks ensemble weights, test.jsonl scores them:

- frozen all-MiniLM-L6-v2 + logistic regression (C=10), and with ``--mpnet`` frozen
  all-mpnet-base-v2 + LR (embeddings through an on-disk cache: ``--cache``);
- adaptloop's n-gram model (``train/lexical.py``, TF-IDF of words and characters + LR).

Every pair and the triple are averaged with three weightings: the dev-best grid weights, equal
weights, and adaptloop's rule (``train.ensemble.pick_weights``: within 0.5% of the dev-best, the
closest to equal). Prints a table and writes benchmarks/results/lexical-members-<dataset>.json.
"""

from __future__ import annotations

import argparse
import itertools
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


def member_args(doc: str, dataset: str) -> argparse.Namespace:
    """The arguments every member-probabilities benchmark takes, parsed."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=dataset)
    ap.add_argument("--mpnet", action="store_true", help="also frozen all-mpnet-base-v2 (minutes to embed on CPU)")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "adaptloop" / "bench-embeddings")
    ap.add_argument("--out", type=Path, default=None)
    return ap.parse_args()


def write_out(a: argparse.Namespace, name: str, out: dict) -> None:
    """``out`` to --out, else benchmarks/results/<name>-<dataset>.json."""
    dest = a.out or REPO / "benchmarks" / "results" / f"{name}-{a.dataset}.json"
    dest.write_text(json.dumps(out, indent=1))
    print(f"written to {dest}")


def member_probs(a: argparse.Namespace) -> dict:
    """Train's 90% fits frozen MiniLM + LR (C=10), frozen mpnet + LR with ``--mpnet``, and the n-gram
    model; returns their class probabilities on dev (train's other 10%) and test, with the labels,
    the gold ids (-1: a test label train lacks), the split sizes and each fit's seconds."""
    from adaptloop.train import FitContext, trainer_for
    from adaptloop.train.encoder import EmbeddingCache, set_threads
    from adaptloop.train.logreg import fit_logreg
    from adaptloop.types import Example, Pipeline, TaskSpec

    set_threads(0)
    rows = {s: [json.loads(line) for line in (DATASETS / a.dataset / f"{s}.jsonl").open(encoding="utf-8")]
            for s in ("train", "test")}
    train = rows["train"]
    random.Random(0).shuffle(train)
    dev, fit, test = train[: len(train) // 10], train[len(train) // 10:], rows["test"]
    labels = sorted({r["label"] for r in train})
    ids = {lab: i for i, lab in enumerate(labels)}
    y = {"dev": np.array([ids[r["label"]] for r in dev]), "test": np.array([ids.get(r["label"], -1) for r in test])}
    texts = {"fit": [r["text"] for r in fit], "dev": [r["text"] for r in dev], "test": [r["text"] for r in test]}
    cache = EmbeddingCache(a.cache)
    probs: dict[str, dict[str, np.ndarray]] = {}
    seconds: dict[str, float] = {}
    for name in ["minilm", *(["mpnet"] if a.mpnet else [])]:
        x = {k: cache.get(ENCODERS[name], v) for k, v in texts.items()}
        t0 = time.monotonic()
        clf = fit_logreg(x["fit"], np.array([ids[r["label"]] for r in fit]), c=10.0, seed=0)
        seconds[name] = time.monotonic() - t0
        probs[name] = {k: clf.predict_proba(x[k]) for k in ("dev", "test")}
    spec = TaskSpec(name=a.dataset, prompt="classify", family="classification", labels=tuple(labels),
                    primary_metric="accuracy")
    t0 = time.monotonic()
    model, _ = trainer_for("lexical").fit(spec, Pipeline("raw", "lexical", ENCODERS["minilm"]),
                                          [Example(text=r["text"], label=r["label"]) for r in fit], [], FitContext())
    seconds["lexical"] = time.monotonic() - t0
    probs["lexical"] = {k: model.predict_proba(texts[k]) for k in ("dev", "test")}
    return {"labels": labels, "y": y, "probs": probs, "seconds": seconds, "n_fit": len(fit), "n_dev": len(dev)}


def main() -> None:
    from adaptloop.train.ensemble import _mix, pick_weights, simplex_grid

    a = member_args(__doc__, "banking77")
    m = member_probs(a)
    y, probs, seconds = m["y"], m["probs"], m["seconds"]

    def acc(p: np.ndarray, split: str) -> float:
        return float((p.argmax(1) == y[split]).mean())

    out = {"dataset": a.dataset, "date": time.strftime("%Y-%m-%d"), "n_fit": m["n_fit"], "n_dev": m["n_dev"],
           "fit_seconds": {k: round(v, 1) for k, v in seconds.items()},
           "members": {k: {"dev": acc(p["dev"], "dev"), "test": acc(p["test"], "test")} for k, p in probs.items()},
           "ensembles": []}
    for r in range(2, len(probs) + 1):
        for combo in itertools.combinations(probs, r):
            dev_p = [probs[c]["dev"] for c in combo]
            grid = simplex_grid(r)
            dev_best = max(grid, key=lambda w: acc(_mix(dev_p, np.asarray(w)), "dev"))
            rule, _ = pick_weights(dev_p, y["dev"])
            row = {"members": list(combo)}
            for how, w in (("dev_best", dev_best), ("equal", (1 / r,) * r), ("adaptloop", rule)):
                row[how] = {"weights": [round(v, 2) for v in w],
                            "test": acc(_mix([probs[c]["test"] for c in combo], np.asarray(w)), "test")}
            out["ensembles"].append(row)
    print(f"{'model':<28} {'dev':>7} {'test':>7}")
    for k, m in out["members"].items():
        print(f"{k:<28} {m['dev']:>7.4f} {m['test']:>7.4f}")
    print(f"{'ensemble':<28} {'dev-best':>9} {'equal':>7} {'adaptloop':>9}")
    for e in out["ensembles"]:
        print(f"{' + '.join(e['members']):<28} {e['dev_best']['test']:>9.4f} {e['equal']['test']:>7.4f} "
              f"{e['adaptloop']['test']:>9.4f}")
    write_out(a, "lexical-members", out)


if __name__ == "__main__":
    main()
