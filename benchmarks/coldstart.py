"""Cold-start benchmark: adaptloop vs two peer baselines on the same data, one run.

    .venv/bin/python benchmarks/coldstart.py --dataset banking77 --budget 20m

1. adaptloop: `adaptloop new` on train.jsonl with the budget, then `adaptloop eval` on
   test.jsonl (the CLI, as a user runs it): what serves. When that is not the search's winner
   (the winner is slower than `[serve] min_throughput`, so a student or a faster node serves),
   `adaptloop eval -m vN` scores the winner too (`winner_test`).
2. frozen all-MiniLM-L6-v2 embeddings (mean pooled) + scikit-learn logistic regression on
   all of train.jsonl.
3. a default transformers fine-tune: AutoModelForSequenceClassification on the same encoder,
   Trainer defaults with 3 epochs, lr 5e-5, batch 32 (`--skip-finetune` leaves it out).
4. the best fixed recipe: the class probabilities of adaptloop's own MiniLM fine-tune (its default
   hyperparameters, no budget, 10% of train as its dev split) averaged with those of a logistic
   regression (C=10) on frozen all-mpnet-base-v2 embeddings (the pair that beat the graph search
   on banking77 by hand).
5. SetFit (the `setfit` package, offline, its metric a function so nothing is fetched) on the
   same encoder: contrastive pairs from train.jsonl fine-tune the body, then a logistic
   regression head on all of train. It has no time budget of its own: its body steps are set
   to what fits the budget, each step of a 40-step probe timed, and a callback stops the body's
   training at the budget less the rest of a fit (loading, pairs, the head) (a step count from
   two whole fits' difference ran 847 s of a 10-minute budget on snips, and 482 s in another
   run) (`--only setfit`; not in the default set, install with `pip install setfit`).

`--official-dev` hands adaptloop the dataset's validation.jsonl as `new --eval-data`: its frozen
eval set and dev are drawn from it, and all of train.jsonl trains (as the peers train on all of
it); without it, adaptloop holds its eval set and dev out of train.jsonl.

`--recipe-rows WORKSPACE` fits the fixed recipe on the rows an adaptloop workspace's cold start fitted
on (its train and dev splits, without the frozen eval set) instead of all of train.jsonl: the recipe
with adaptloop's data, to tell what the held-out eval set costs from what the search costs.

`--setting serve.min_throughput=0` (repeatable) sets a key of adaptloop's workspace settings before its
run (recorded in its row). Once scored, adaptloop's workspace keeps its store and reports and loses its
models and exports (0.7–2 GB a 20-minute run), unless `--keep-models`.

`--budgets 2m 5m 10m 20m` runs the budgeted methods (adaptloop, SetFit) once per budget in the
same script run; frozen + LR, the default fine-tune and the fixed recipe run once and report
their wall time. `--only a b ...` runs some methods (and keeps the others' earlier results, and
a budgeted method's results at other budgets). Each row records the commit it ran on.

Prints a table and writes benchmarks/results/coldstart-<dataset>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))
ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
LARGE = "sentence-transformers/all-mpnet-base-v2"


def rows(dataset: str, split: str) -> list[dict]:
    with (DATASETS / dataset / f"{split}.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def scores(y_true: list[str], y_pred: list[str]) -> dict:
    from adaptloop.evaluate.metrics import classification_metrics

    labels = sorted(set(y_true) | set(y_pred))
    oos = "oos" if "oos" in labels else None
    m = classification_metrics(y_true, y_pred, labels=labels, out_of_scope_label=oos)
    return {k: v for k, v in m.items() if k != "per_class"}


def configure(ws: Path, settings: Sequence[str]) -> dict[str, Any]:
    """Set ``section.key=value`` pairs (a TOML value: ``serve.min_throughput=0``) in the workspace's
    adaptloop.toml, validated as adaptloop validates it; returns them as set, for the results."""
    import tomllib
    from pydantic import ValidationError

    from adaptloop.config import Settings, load_settings, write_settings

    data = load_settings(ws).model_dump()
    applied: dict[str, Any] = {}
    for pair in settings:
        key, sep, raw = pair.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or section not in data or name not in data[section]:
            sys.exit(f"--setting {pair!r}: expected section.key=value with a key of adaptloop.toml "
                     f"(docs/settings.md), e.g. serve.min_throughput=0")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            sys.exit(f"--setting {pair!r}: {raw.strip()!r} is not a TOML value; quote a string: {key}='\"text\"'")
        data[section][name] = applied[key.strip()] = value
    try:
        write_settings(ws, Settings.model_validate(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        sys.exit(f"--setting: {'.'.join(str(p) for p in first['loc'])}: {first['msg']} (docs/settings.md)")
    return applied


def drop_models(ws: Path) -> int:
    """Remove a scored workspace's model artifacts and exports (0.7–2 GB a 20-minute run), keeping its
    store and reports (`adaptloop runs -w` still shows the run); the bytes freed."""
    freed = 0
    for folder in (ws / ".adaptloop" / "artifacts", ws / ".adaptloop" / "exports"):
        if folder.is_dir():
            freed += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            shutil.rmtree(folder)
    return freed


def run_adaptloop(dataset: str, budget: str, official_dev: bool = False, settings: Sequence[str] = (),
                  keep_models: bool = False) -> dict:
    # `python -m adaptloop.cli` runs the adaptloop that this interpreter imports (PYTHONPATH
    # can point at a snapshot of the code, so that editing the tree cannot touch a long run)
    exe = [sys.executable, "-m", "adaptloop.cli"]
    # the workspace is kept (its path is in the results) so `adaptloop runs -w` can show it
    ws = Path(tempfile.mkdtemp(prefix=f"adaptloop-bench-{dataset}-")) / "ws"
    subprocess.run([*exe, "init", str(ws)], check=True)
    applied = configure(ws, settings) if settings else {}
    gold = DATASETS / dataset / "validation.jsonl"
    if official_dev and not gold.exists():
        sys.exit(f"--official-dev: {dataset} has no validation.jsonl; run without it")
    extra = ["--eval-data", str(gold)] if official_dev else []
    t0 = time.monotonic()
    new = subprocess.run([*exe, "new", f"classify {dataset} messages by intent", "--data",
                          str(DATASETS / dataset / "train.jsonl"), *extra, "--budget", budget,
                          "--json", "-w", str(ws)], capture_output=True, text=True)
    if new.returncode != 0:
        sys.exit(f"adaptloop new failed ({new.returncode}):\n{new.stderr[-3000:]}")
    wall_new = time.monotonic() - t0
    ev = subprocess.run([*exe, "eval", "--data", str(DATASETS / dataset / "test.jsonl"),
                         "--json", "-w", str(ws)], check=True, capture_output=True, text=True)
    r, e = json.loads(new.stdout), json.loads(ev.stdout)
    served = (r.get("serving") or {}).get("version")
    winner_test = None
    if r.get("version") is not None and served not in (None, f"v{r['version']}"):
        # production is not the search's winner ([serve] min_throughput): the winner is scored too
        w = subprocess.run([*exe, "eval", "--data", str(DATASETS / dataset / "test.jsonl"), "-m",
                            f"v{r['version']}", "--json", "-w", str(ws)], check=True, capture_output=True, text=True)
        winner_test = {k: v for k, v in json.loads(w.stdout).items() if k not in ("per_class", "examples_wrong")}
    if not keep_models:
        print(f"dropped the workspace's models and exports: {drop_models(ws) / 1e9:.1f} GB", file=sys.stderr)
    return {"method": "adaptloop", "budget": budget, "wall_seconds": round(wall_new, 1),
            "eval_data": "validation.jsonl" if official_dev else None, "settings": applied,
            "workspace": str(ws), "served": served, "winner_version": r.get("version"),
            "winner_test": winner_test,
            "nodes": [{k: n.get(k) for k in ("id", "parent_id", "name", "status", "train_seconds", "move",
                                             "intervention")} |
                      {"dev_accuracy": n["dev"].get("accuracy"), "strategy": n["pipeline"]["strategy"],
                       "recipe": n["pipeline"]["recipe"]} for n in r["nodes"]],
            "winner": r["winner"]["node"], "frozen_eval": r["winner"]["eval"],
            # a refit on train + dev serves: the dev-selected original on the same eval set, for the record
            "frozen_eval_before_refit": r["winner"].get("eval_before_refit"),
            "test": {k: v for k, v in e.items() if k not in ("per_class", "examples_wrong")}}


def workspace_rows(folder: Path) -> list[dict]:
    """The rows an adaptloop workspace's first cold start fitted on: its train and dev splits (what a refit
    sees), without the frozen eval set."""
    from sqlalchemy import select

    from adaptloop.agent.prepare import _examples
    from adaptloop.store.db import Run
    from adaptloop.workspace import Workspace

    ws = Workspace.open(folder)
    run = ws.store.all(select(Run).order_by(Run.id))[0]
    data = ws.store.run_state(run).datasets
    return [{"text": e.text, "label": e.label} for k in ("raw", "dev") for e in _examples(ws, data[k])]


def frozen_logreg_proba(dataset: str, encoder: str, labels: list[str], train: list[dict] | None = None):
    """Test-set class probabilities (columns in ``labels`` order) of a logistic regression (C=10)
    on ``encoder``'s frozen embeddings of ``train`` (default: train.jsonl)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from adaptloop.train.encoder import embed, load_base, set_threads

    set_threads(0)
    train, test = train or rows(dataset, "train"), rows(dataset, "test")
    tok, model = load_base(encoder)
    x_tr = embed(tok, model, [r["text"] for r in train])
    x_te = embed(tok, model, [r["text"] for r in test])
    clf = LogisticRegression(C=10.0, max_iter=1000).fit(x_tr, [r["label"] for r in train])
    out = np.zeros((len(test), len(labels)))
    out[:, [labels.index(c) for c in clf.classes_]] = clf.predict_proba(x_te)
    return out


def run_frozen_logreg(dataset: str) -> dict:
    t0 = time.monotonic()
    labels = sorted({r["label"] for r in rows(dataset, "train")})
    p = frozen_logreg_proba(dataset, ENCODER, labels)
    return {"method": "frozen MiniLM + logistic regression (C=10)",
            "wall_seconds": round(time.monotonic() - t0, 1),
            "test": scores([r["label"] for r in rows(dataset, "test")], [labels[i] for i in p.argmax(1)])}


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


def adaptloop_finetune_proba(dataset: str, labels: list[str], train: list[dict] | None = None):
    """Test-set class probabilities of adaptloop's own MiniLM fine-tune (its default hyperparameters,
    ``search.interventions.FINETUNE_DEFAULTS``; 10% of ``train``, default train.jsonl, held out as its dev
    split), no budget."""
    import random

    from adaptloop.search.interventions import FINETUNE_DEFAULTS
    from adaptloop.train import FitContext, trainer_for
    from adaptloop.train.encoder import set_threads
    from adaptloop.types import Example, Pipeline, TaskSpec

    set_threads(0)
    train = [Example(text=r["text"], label=r["label"]) for r in train or rows(dataset, "train")]
    random.Random(0).shuffle(train)
    cut = len(train) // 10
    spec = TaskSpec(name=dataset, prompt=f"classify {dataset} messages", family="classification",
                    labels=tuple(labels), primary_metric="accuracy")
    pipe = Pipeline("raw", "finetune", encoder=ENCODER, hparams=dict(FINETUNE_DEFAULTS), seed=0)
    model, _ = trainer_for("finetune").fit(spec, pipe, train[cut:], train[:cut], FitContext())
    return model.predict_proba([r["text"] for r in rows(dataset, "test")])


def run_fixed_recipe(dataset: str, workspace: Path | None = None) -> dict:
    """The best fixed recipe: adaptloop's MiniLM fine-tune averaged with frozen mpnet + logistic regression,
    on train.jsonl or on the rows a workspace's cold start fitted on (``--recipe-rows``)."""
    t0 = time.monotonic()
    labels = sorted({r["label"] for r in rows(dataset, "train")})
    train = workspace_rows(workspace) if workspace else None
    p = (adaptloop_finetune_proba(dataset, labels, train) + frozen_logreg_proba(dataset, LARGE, labels, train)) / 2
    return {"method": "fixed recipe: adaptloop MiniLM fine-tune + frozen mpnet LR, averaged"
                      + (f" (on {len(train)} rows of a workspace's train + dev)" if train else ""),
            "wall_seconds": round(time.monotonic() - t0, 1), "rows": len(train) if train else None,
            "test": scores([r["label"] for r in rows(dataset, "test")], [labels[i] for i in p.argmax(1)])}


PROBE_STEPS = 40  # SetFit's timing probe


def run_setfit(dataset: str, budget: str) -> dict:
    """SetFit on the default encoder, its body steps fitted to ``budget`` (``--only setfit``)."""
    import torch
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from transformers import TrainerCallback

    from adaptloop.agent.budget import parse_budget
    from adaptloop.train.encoder import resolve_encoder

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.monotonic()
    seconds = parse_budget(budget)
    train, test = rows(dataset, "train"), rows(dataset, "test")
    data = Dataset.from_dict({"text": [r["text"] for r in train], "label": [r["label"] for r in train]})

    class Clock(TrainerCallback):
        """Times each body step; with ``at``, stops the body's training once the wall clock passes it."""

        def __init__(self, at: float = float("inf")) -> None:
            self.at, self.ends, self.stopped_at = at, [], None

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.monotonic())
            if self.ends[-1] >= self.at:
                control.should_training_stop = True
                self.stopped_at = state.global_step
            return control

    def fit(steps: int, clock: Clock) -> tuple[SetFitModel, float]:
        model = SetFitModel.from_pretrained(resolve_encoder(ENCODER), labels=sorted({r["label"] for r in train}))
        with tempfile.TemporaryDirectory() as out:
            args = TrainingArguments(output_dir=out, batch_size=16, num_iterations=1, max_steps=steps, seed=0,
                                     report_to="none", show_progress_bar=False, save_strategy="no")
            trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[clock],
                              metric=lambda pred, gold: {"accuracy": float((pred == gold).mean())})
            t = time.monotonic()
            trainer.train()
        return model, time.monotonic() - t

    probe = Clock()
    _, probe_s = fit(PROBE_STEPS, probe)  # pairs, the body steps, and the head on every training text
    per_step = (probe.ends[-1] - probe.ends[4]) / (len(probe.ends) - 5)  # steps past the first five's warm-up
    head = probe_s - per_step * len(probe.ends)  # loading, pairs and the head: what a fit costs beside its steps
    steps = max(1, int((seconds - (time.monotonic() - t0) - head) / per_step))
    deadline = Clock(t0 + seconds - head)
    model, _ = fit(steps, deadline)
    pred = [str(p) for p in model.predict([r["text"] for r in test], batch_size=128)]
    return {"method": "SetFit (MiniLM body, logistic regression head)", "budget": budget,
            "body_steps": deadline.stopped_at or steps, "planned_steps": steps, "seconds_per_step": round(per_step, 3),
            "other_seconds": round(head, 1),
            "wall_seconds": round(time.monotonic() - t0, 1), "test": scores([r["label"] for r in test], pred)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="banking77")
    ap.add_argument("--budget", default="20m")
    ap.add_argument("--budgets", nargs="+", default=None, help="several budgets in one run, e.g. 2m 5m 10m 20m")
    ap.add_argument("--skip-finetune", action="store_true", help="leave out the slow peer fine-tune")
    ap.add_argument("--only", nargs="+", choices=["adaptloop", "frozen", "finetune", "recipe", "setfit"],
                    default=None)
    ap.add_argument("--official-dev", action="store_true",
                    help="adaptloop draws its frozen eval set and dev from the dataset's validation.jsonl "
                         "(`new --eval-data`) and trains on all of train.jsonl, as the peers do")
    ap.add_argument("--recipe-rows", type=Path, default=None, metavar="WORKSPACE",
                    help="fit the fixed recipe on the rows this adaptloop workspace's cold start fitted on (its "
                         "train and dev splits, without the frozen eval set) instead of all of train.jsonl: the "
                         "recipe with adaptloop's data")
    ap.add_argument("--setting", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a setting of adaptloop's workspace (adaptloop.toml, docs/settings.md), repeatable: "
                         "--setting serve.min_throughput=0 runs without the serving-speed limit")
    ap.add_argument("--keep-models", action="store_true",
                    help="keep adaptloop's trained models and exports in its workspace (0.7–2 GB a 20-minute "
                         "run; by default only its store and reports are kept once it is scored)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    out = a.out or REPO / "benchmarks" / "results" / f"coldstart-{a.dataset}.json"
    prev = json.loads(out.read_text()) if out.exists() and a.only else {"results": []}
    prefix = {"adaptloop": "adaptloop", "frozen": "frozen", "finetune": "transformers", "recipe": "fixed recipe",
              "setfit": "SetFit"}
    budgets = a.budgets or [a.budget]

    def measured_again(r: dict) -> bool:  # a row this invocation replaces: same method (and budget, if budgeted)
        k = next((k for k in a.only if r["method"].startswith(prefix[k])), None)
        if k == "recipe":  # on train.jsonl or on a workspace's rows: two rows
            return bool(r.get("rows")) == bool(a.recipe_rows)
        return k is not None and (k not in ("adaptloop", "setfit") or r.get("budget") in budgets)

    results = [r for r in prev["results"] if a.only and not measured_again(r)]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip() or None
    steps = {"adaptloop": lambda b: run_adaptloop(a.dataset, b, a.official_dev, a.setting, a.keep_models),
             "frozen": lambda b: run_frozen_logreg(a.dataset),
             "finetune": lambda b: run_default_finetune(a.dataset),
             "recipe": lambda b: run_fixed_recipe(a.dataset, a.recipe_rows),
             "setfit": lambda b: run_setfit(a.dataset, b)}
    slow = ("finetune", "recipe")
    chosen = a.only or [k for k in steps if k != "setfit" and not (k in slow and a.skip_finetune)]
    out.parent.mkdir(parents=True, exist_ok=True)
    for k in chosen:
        for b in budgets if k in ("adaptloop", "setfit") else budgets[:1]:
            print(f"== {k} {b}", file=sys.stderr, flush=True)
            results.append({**steps[k](b), "commit": commit})
            report = {"dataset": a.dataset, "machine": f"{os.cpu_count()} CPU cores, torch threads = all",
                      "date": time.strftime("%Y-%m-%d"), "results": results}
            out.write_text(json.dumps(report, indent=1))  # after each row: a stopped run keeps what it measured
    print(f"{'method':<62} {'budget':>6} {'test acc':>8} {'in-scope':>8} {'oos rec':>8} {'wall s':>8}")
    for r in results:
        t = r["test"]
        ins = f"{t['in_scope_accuracy']:.4f}" if "in_scope_accuracy" in t else "-"
        oos = f"{t['oos_recall']:.4f}" if t.get("oos_recall") is not None else "-"
        print(f"{r['method'][:62]:<62} {r.get('budget', '-'):>6} {t['accuracy']:>8.4f} {ins:>8} {oos:>8} "
              f"{r['wall_seconds']:>8.0f}")
        if r.get("winner_test"):
            w = r["winner_test"]
            ins = f"{w['in_scope_accuracy']:.4f}" if "in_scope_accuracy" in w else "-"
            oos = f"{w['oos_recall']:.4f}" if w.get("oos_recall") is not None else "-"
            print(f"{'  its search winner v' + str(r['winner_version']) + ' (slower than [serve] min_throughput)':<62} "
                  f"{r.get('budget', '-'):>6} {w['accuracy']:>8.4f} {ins:>8} {oos:>8} {'':>8}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
