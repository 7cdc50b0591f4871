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

import os
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
SHARES = (0.0025, 0.005, 0.01, 0.02)


def main() -> None:
    from lexical_members import member_args, member_probs, write_out  # the script's own folder is on sys.path

    from adaptloop.data.spec import OUT_OF_SCOPE_NAMES
    from adaptloop.train.threshold import adjust, scope_threshold

    a = member_args(__doc__, "clinc150")
    m = member_probs(a)
    labels, y, probs = m["labels"], m["y"], m["probs"]
    o = labels.index(next(lab for lab in labels if lab.lower() in OUT_OF_SCOPE_NAMES))
    probs["n-gram"] = probs.pop("lexical")
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

    out = {"dataset": a.dataset, "date": time.strftime("%Y-%m-%d"), "n_fit": m["n_fit"], "n_dev": m["n_dev"],
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
    write_out(a, "oos-threshold", out)


if __name__ == "__main__":
    main()
