"""Generation cold start on a public set: base model vs `adaptloop new` on the official test split.

    .venv/bin/python benchmarks/generation.py --task banking77 --budget 12m --test-n 500
    .venv/bin/python benchmarks/generation.py --task gsm8k --budget 15m --test-n 300 --set generation.max_new_tokens=256
    .venv/bin/python benchmarks/generation.py --task mbpp --budget 10m --test-n 500
    .venv/bin/python benchmarks/generation.py --task scitldr --budget 10m --test-n 200

1. `adaptloop new PROMPT --data D/train.jsonl --budget B` in a fresh workspace (the model is the
   workspace's `[generation] model`, SmolLM2-135M-Instruct by default, offline from PyPI).
2. The untrained base model, with the full instruction the run gave it, decodes the first
   ``--test-n`` test records (through llama.cpp when llama-cpp-python is installed and
   ``[generation] llama_cpp`` is on; the result names the engine); then `adaptloop eval --limit N`
   scores the promoted model on the same records (mbpp: humaneval too).
3. Writes benchmarks/results/generation-TASK.json: both scores, format compliance, the findings,
   the run's nodes and the wall times.
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
REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))
EXE = [sys.executable, "-m", "adaptloop.cli"]
TASKS = {
    "banking77": ("reply with the intent name of each banking customer message", "train", ["test"]),
    "gsm8k": ("solve grade-school math word problems step by step", "train", ["test"]),
    "mbpp": ("write code: a Python function for each task", "train", ["test", "humaneval:test"]),
    "scitldr": ("summarize each paper abstract into a one-sentence tldr", "train", ["test"]),
}


def cli(*args: str) -> dict:
    p = subprocess.run([*EXE, *map(str, args), "--json"], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"adaptloop {args[0]} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout)


def base_scores(ws: Path, test: Path, n: int) -> dict:
    """The untrained model on the test records, shown the full instruction (as node 'base' was)."""
    from sqlalchemy import select

    from adaptloop.agent.predict import evaluate_generation
    from adaptloop.data.prompts import instruction
    from adaptloop.store.db import Task
    from adaptloop.train.causal import load_base
    from adaptloop.types import TaskSpec
    from adaptloop.workspace import Workspace

    w = Workspace.open(ws)
    task = w.store.all(select(Task))[-1]
    spec = TaskSpec.from_dict(task.spec)
    base = load_base(spec.output["base"], max_new_tokens=spec.output["max_new_tokens"],
                     llama_cpp=w.settings.generation.llama_cpp)
    recipe = "cot" if spec.output["kind"] == "math" else "raw"
    base.presentation = {"instruction": instruction(spec.output["kind"], spec.labels, "full"), "recipe": recipe}
    scored = evaluate_generation(spec, base, test, limit=n, batch_size=w.settings.generation.batch_size)
    return {**scored, "engine": "llama.cpp" if base.fast is not None else "transformers"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=sorted(TASKS), required=True)
    ap.add_argument("--budget", default="10m", help="`adaptloop new` budget")
    ap.add_argument("--test-n", type=int, default=300, help="score the first N test records")
    ap.add_argument("--sample-test", action="store_true",
                    help="score a seeded random sample of N test records instead of the first N (for files sorted "
                         "by label, like banking77's)")
    ap.add_argument("--train-n", type=int, default=0, help="use only the first N train records (0 = all)")
    ap.add_argument("--set", action="append", default=[], help="workspace setting, e.g. generation.eval_max=100")
    ap.add_argument("--skip-base", action="store_true",
                    help="do not decode the test records with the untrained model (its score is in an earlier result)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    prompt, train_split, tests = TASKS[args.task]
    root = Path(tempfile.mkdtemp(prefix=f"adaptloop-gen-{args.task}-"))
    ws = root / "ws"
    subprocess.run([*EXE, "init", str(ws)], check=True, capture_output=True)
    for kv in args.set:
        _set(ws, kv)
    train = DATASETS / args.task / f"{train_split}.jsonl"
    if args.train_n:
        lines = train.read_text(encoding="utf-8").split("\n")[: args.train_n]
        train = root / "train.jsonl"
        train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    t0 = time.perf_counter()
    new = cli("new", prompt, "--data", train, "--budget", args.budget, "-w", ws)
    new_s = time.perf_counter() - t0
    result = {"task": args.task, "prompt": prompt, "budget": args.budget, "test_n": args.test_n,
              "settings": args.set, "workspace": str(ws), "new_seconds": round(new_s, 1),
              "spec": new["spec"], "curation": new["curation"], "stop_reason": new["stop_reason"],
              "winner": new["winner"], "nodes": [{k: n[k] for k in ("name", "pipeline", "dev", "eval", "train_seconds",
                                                                   "reason")} for n in new["nodes"]],
              "tests": {}}
    metric = new["spec"]["primary_metric"]
    for t in tests:
        name, split = t.split(":") if ":" in t else (args.task, t)
        path = DATASETS / name / f"{split}.jsonl"
        if args.sample_test:
            import random

            lines = [x for x in path.read_text(encoding="utf-8").split("\n") if x.strip()]
            path = root / f"{name}-{split}-sample{args.test_n}.jsonl"
            path.write_text("\n".join(random.Random(0).sample(lines, min(args.test_n, len(lines)))) + "\n",
                            encoding="utf-8")
        t1 = time.perf_counter()
        b = {metric: None, "format_ok": None, "findings": [], "engine": "skipped (--skip-base)"} if args.skip_base \
            else base_scores(ws, path, args.test_n)
        t2 = time.perf_counter()
        tuned = cli("eval", "--data", path, "--limit", args.test_n, "-w", ws)
        t3 = time.perf_counter()
        result["tests"][f"{name}/{split}"] = {
            "n": tuned["n"], "metric": metric, "subset": "seeded sample (seed 0)" if args.sample_test else "first N",
            "base": {metric: b[metric], "format_ok": b["format_ok"], "findings": b["findings"],
                     "engine": b["engine"], "seconds": round(t2 - t1, 1)},
            "tuned": {metric: tuned[metric], "format_ok": tuned["format_ok"], "findings": tuned["findings"],
                      "seconds": round(t3 - t2, 1)}}
        base = "skipped" if args.skip_base else f"{b[metric]:.4f} (format ok {b['format_ok']:.2f})"
        print(f"{name}/{split} (first {tuned['n']}): {metric} base {base} "
              f"→ tuned {tuned[metric]:.4f} (format ok {tuned['format_ok']:.2f})", flush=True)
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    out = args.out or REPO / "benchmarks" / "results" / f"generation-{args.task}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"new: {new_s:.0f}s ({len(new['nodes'])} nodes, winner {new['winner'] and new['winner']['node']}); "
          f"wrote {out}")


def _set(ws: Path, kv: str) -> None:
    """One ``section.key=value`` in the workspace's adaptloop.toml (value parsed as TOML)."""
    import tomli_w

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    key, value = kv.split("=", 1)
    section, name = key.split(".", 1)
    path = ws / "adaptloop.toml"
    cfg = tomllib.loads(path.read_text(encoding="utf-8"))
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    cfg.setdefault(section, {})[name] = parsed
    path.write_text(tomli_w.dumps(cfg), encoding="utf-8")


if __name__ == "__main__":
    main()
