"""Near the ceiling, fed mostly systematic flips: the improve cycle must refuse (or promote only
what is not worse on the test split).

    .venv/bin/python benchmarks/planted_flips.py [--flipped 0.7] [--budget 3m]

1. Cold start (`adaptloop new`) on snips with 150 examples per intent: a strong production model.
2. 400 traces of unseen snips texts with feedback; a share ``--flipped`` of them relabelled
   systematically (every text of intent A labelled B, of C labelled D: a confused reviewer or a
   label-flipping attack), the rest labelled correctly. The answers stay in this script.
3. `adaptloop improve --budget B`, then `adaptloop eval` on the official test split for the
   version before and the production version after.

Pass: the cycle is refused, or the production model after it is not worse on test (within
0.5 points). Writes benchmarks/results/planted-flips.json with the decision, its reason, the
triage's recall of the flipped feedback and both test accuracies.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))
FLIPS = (("PlayMusic", "AddToPlaylist"), ("RateBook", "SearchCreativeWork"))


def load(split: str) -> list[dict]:
    with (DATASETS / "snips" / f"{split}.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def cli(*args: str) -> dict:
    """One adaptloop command with --json; its JSON object."""
    r = subprocess.run([sys.executable, "-m", "adaptloop.cli", *args, "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"adaptloop {' '.join(args[:2])} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=150)
    ap.add_argument("--traces", type=int, default=400)
    ap.add_argument("--flipped", type=float, default=0.7, help="share of the traces systematically relabelled")
    ap.add_argument("--new-budget", default="4m")
    ap.add_argument("--budget", default="3m", help="improve budget")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "planted-flips.json")
    a = ap.parse_args()
    t0 = time.monotonic()
    rng = random.Random(0)
    train = load("train")
    rng.shuffle(train)
    seen: dict[str, int] = {}
    seed, pool = [], []
    for r in train:
        if seen.get(r["label"], 0) < a.per_class:
            seen[r["label"]] = seen.get(r["label"], 0) + 1
            seed.append(r)
        else:
            pool.append(r)
    flip = dict(FLIPS)
    n_flip = int(a.flipped * a.traces)
    flippable = [r for r in pool if r["label"] in flip][:n_flip]
    rest = [r for r in pool if r["label"] not in flip][: a.traces - len(flippable)]
    traces, answers = [], {}
    start = dt.datetime(2026, 6, 1, 9)
    for i, r in enumerate(flippable + rest):
        fb = flip.get(r["label"], r["label"]) if i < len(flippable) else r["label"]
        tid = f"flip-{i:04d}"
        traces.append({"id": tid, "ts": (start + dt.timedelta(seconds=37 * i)).isoformat(), "input": r["text"],
                       "output": None, "feedback": {"label": fb, "source": f"reviewer-{i % 9}"}})
        answers[tid] = fb != r["label"]
    rng.shuffle(traces)
    work = Path(tempfile.mkdtemp(prefix="adaptloop-flips-"))
    (work / "seed.jsonl").write_text("".join(json.dumps({"text": r["text"], "label": r["label"]}) + "\n"
                                             for r in seed))
    (work / "traces.jsonl").write_text("".join(json.dumps(t) + "\n" for t in traces))
    ws = str(work / "ws")
    subprocess.run([sys.executable, "-m", "adaptloop.cli", "init", ws], check=True, capture_output=True)
    new = cli("new", "route voice assistant requests to the right intent", "--data", str(work / "seed.jsonl"),
              "--budget", a.new_budget, "--workspace", ws)
    test = str(DATASETS / "snips" / "test.jsonl")
    before = cli("eval", "--data", test, "--workspace", ws)
    cli("traces", "import", str(work / "traces.jsonl"), "--workspace", ws)
    imp = cli("improve", "--budget", a.budget, "--workspace", ws)
    after = cli("eval", "--data", test, "--workspace", ws)

    from sqlalchemy import select

    from adaptloop.store.db import TraceRow
    from adaptloop.workspace import Workspace

    rows = Workspace.open(Path(ws)).store.all(select(TraceRow))
    flagged = {r.id for r in rows if r.triage == "poison"}
    bad = {t for t, wrong in answers.items() if wrong}
    delta = after["accuracy"] - before["accuracy"]
    out = {"bench": "planted_flips", "dataset": "snips", "flips": FLIPS, "seed_examples": len(seed),
           "traces": len(traces), "flipped": len(bad), "cold_start_version": new["version"],
           "decision": imp["decision"], "reason": imp["reason"], "test_before": round(before["accuracy"], 4),
           "test_after": round(after["accuracy"], 4), "model_after": after["model"],
           "flip_recall": round(len(flagged & bad) / max(len(bad), 1), 3),
           "flag_precision": round(len(flagged & bad) / max(len(flagged), 1), 3),
           "passed": imp["decision"] != "promoted" or delta >= -0.005, "wall_s": round(time.monotonic() - t0, 1)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in out.items() if k != "reason"}, indent=1))
    print("reason:", out["reason"])


if __name__ == "__main__":
    main()
