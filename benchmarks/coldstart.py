"""Cold-start benchmark: adaptloop vs two peer baselines on the same data, one run.

    .venv/bin/python benchmarks/coldstart.py --dataset banking77 --budget 20m

1. adaptloop: `adaptloop new` on train.jsonl with the budget, then `adaptloop eval` on
   test.jsonl (the CLI, as a user runs it).
2. frozen all-MiniLM-L6-v2 embeddings (mean pooled) + scikit-learn logistic regression on
   all of train.jsonl.
3. a default transformers fine-tune: AutoModelForSequenceClassification on the same encoder,
   Trainer defaults with 3 epochs, lr 5e-5, batch 32 (`--skip-finetune` leaves it out).

Prints a table and writes benchmarks/results/coldstart-<dataset>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))
ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


def rows(dataset: str, split: str) -> list[dict]:
    with (DATASETS / dataset / f"{split}.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def scores(y_true: list[str], y_pred: list[str]) -> dict:
    from adaptloop.evaluate.metrics import classification_metrics

    labels = sorted(set(y_true) | set(y_pred))
    oos = "oos" if "oos" in labels else None
    m = classification_metrics(y_true, y_pred, labels=labels, out_of_scope_label=oos)
    return {k: v for k, v in m.items() if k != "per_class"}


def run_adaptloop(dataset: str, budget: str) -> dict:
    # `python -m adaptloop.cli` runs the adaptloop that this interpreter imports (PYTHONPATH
    # can point at a snapshot of the code, so that editing the tree cannot touch a long run)
    exe = [sys.executable, "-m", "adaptloop.cli"]
    # the workspace is kept (its path is in the results) so `adaptloop runs -w` can show it
    ws = Path(tempfile.mkdtemp(prefix=f"adaptloop-bench-{dataset}-")) / "ws"
    subprocess.run([*exe, "init", str(ws)], check=True)
    t0 = time.monotonic()
    new = subprocess.run([*exe, "new", f"classify {dataset} messages by intent", "--data",
                          str(DATASETS / dataset / "train.jsonl"), "--budget", budget,
                          "--json", "-w", str(ws)], capture_output=True, text=True)
    if new.returncode != 0:
        sys.exit(f"adaptloop new failed ({new.returncode}):\n{new.stderr[-3000:]}")
    wall_new = time.monotonic() - t0
    ev = subprocess.run([*exe, "eval", "--data", str(DATASETS / dataset / "test.jsonl"),
                         "--json", "-w", str(ws)], check=True, capture_output=True, text=True)
    r, e = json.loads(new.stdout), json.loads(ev.stdout)
    return {"method": "adaptloop", "budget": budget, "wall_seconds": round(wall_new, 1),
            "workspace": str(ws),
            "nodes": [{k: n.get(k) for k in ("id", "parent_id", "name", "status", "train_seconds", "move",
                                             "intervention")} |
                      {"dev_accuracy": n["dev"].get("accuracy"), "strategy": n["pipeline"]["strategy"],
                       "recipe": n["pipeline"]["recipe"]} for n in r["nodes"]],
            "winner": r["winner"]["node"], "frozen_eval": r["winner"]["eval"],
            "test": {k: v for k, v in e.items() if k not in ("per_class", "examples_wrong")}}


def run_frozen_logreg(dataset: str) -> dict:
    from sklearn.linear_model import LogisticRegression

    from adaptloop.train.encoder import embed, load_base, set_threads

    set_threads(0)
    t0 = time.monotonic()
    train, test = rows(dataset, "train"), rows(dataset, "test")
    tok, model = load_base(ENCODER)
    x_tr = embed(tok, model, [r["text"] for r in train])
    x_te = embed(tok, model, [r["text"] for r in test])
    clf = LogisticRegression(C=10.0, max_iter=1000).fit(x_tr, [r["label"] for r in train])
    pred = clf.predict(x_te).tolist()
    return {"method": "frozen MiniLM + logistic regression (C=10)",
            "wall_seconds": round(time.monotonic() - t0, 1),
            "test": scores([r["label"] for r in test], pred)}


def run_default_finetune(dataset: str) -> dict:
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from adaptloop.train.encoder import resolve_encoder

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.monotonic()
    train, test = rows(dataset, "train"), rows(dataset, "test")
    labels = sorted({r["label"] for r in train})
    idx = {lab: i for i, lab in enumerate(labels)}
    path = resolve_encoder(ENCODER)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(labels))

    class DS(torch.utils.data.Dataset):
        def __init__(self, rs: list[dict]) -> None:
            self.enc = tok([r["text"] for r in rs], truncation=True, max_length=64)
            self.y = [idx.get(r["label"], 0) for r in rs]

        def __len__(self) -> int:
            return len(self.y)

        def __getitem__(self, i: int) -> dict:
            return {"input_ids": self.enc["input_ids"][i],
                    "attention_mask": self.enc["attention_mask"][i], "labels": self.y[i]}

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, num_train_epochs=3, learning_rate=5e-5,
                                 per_device_train_batch_size=32, per_device_eval_batch_size=128,
                                 save_strategy="no", report_to=[], seed=0, logging_steps=50,
                                 disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=DS(train),
                          data_collator=DataCollatorWithPadding(tok))
        trainer.train()
        logits = trainer.predict(DS(test)).predictions
    pred = [labels[i] for i in np.asarray(logits).argmax(1)]
    return {"method": "transformers default fine-tune (3 epochs, lr 5e-5, batch 32)",
            "wall_seconds": round(time.monotonic() - t0, 1),
            "test": scores([r["label"] for r in test], pred)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="banking77")
    ap.add_argument("--budget", default="20m")
    ap.add_argument("--skip-finetune", action="store_true", help="leave out the slow peer fine-tune")
    ap.add_argument("--only", choices=["adaptloop", "frozen", "finetune"], default=None)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    out = a.out or REPO / "benchmarks" / "results" / f"coldstart-{a.dataset}.json"
    prev = json.loads(out.read_text()) if out.exists() and a.only else {"results": []}
    results = [r for r in prev["results"] if a.only and not r["method"].startswith(
        {"adaptloop": "adaptloop", "frozen": "frozen", "finetune": "transformers"}[a.only])]
    steps = {"adaptloop": lambda: run_adaptloop(a.dataset, a.budget),
             "frozen": lambda: run_frozen_logreg(a.dataset),
             "finetune": lambda: run_default_finetune(a.dataset)}
    chosen = [a.only] if a.only else [k for k in steps if not (k == "finetune" and a.skip_finetune)]
    for k in chosen:
        print(f"== {k}", file=sys.stderr, flush=True)
        results.append(steps[k]())
    report = {"dataset": a.dataset, "machine": f"{os.cpu_count()} CPU cores, torch threads = all",
              "date": time.strftime("%Y-%m-%d"), "results": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"{'method':<62} {'test acc':>8} {'in-scope':>8} {'oos rec':>8} {'wall s':>8}")
    for r in results:
        t = r["test"]
        ins = f"{t['in_scope_accuracy']:.4f}" if "in_scope_accuracy" in t else "-"
        oos = f"{t['oos_recall']:.4f}" if t.get("oos_recall") is not None else "-"
        print(f"{r['method'][:62]:<62} {t['accuracy']:>8.4f} {ins:>8} {oos:>8} {r['wall_seconds']:>8.0f}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
