"""Production cycle on clinc150: weak model → served traffic with feedback (some of it wrong) → improve.

    .venv/bin/python benchmarks/production_clinc.py --wrong 0.2 --budget 15m
    .venv/bin/python benchmarks/production_clinc.py --wrong 0.6 --budget 15m

1. Cold start (`adaptloop new`) on 10 examples per intent (and 10 `oos`) from clinc150 train.
2. `adaptloop serve`; the rest of train + validation is replayed through POST /v1/predict, then
   every trace gets POST /v1/feedback with the true label — except a share ``--wrong`` that gets
   a random other label. The ground truth goes to an answer file the agent never reads.
3. `adaptloop improve --budget B` (while the server runs: a promotion is hot-swapped).
4. `adaptloop eval` on the official test split, before (v1) and after (production).
5. Audit queries on the store: traces triaged poisonous in any training / dev / eval set (must be
   0), and — with the answer file — how many truly wrong labels got into training anyway, and
   the triage's precision / recall for wrong feedback.

Writes benchmarks/results/production-clinc150-wrongXX.json, with the improve run's nodes and
decisions and every version it registered (candidate, blend) scored on test.

``--snapshot DIR`` keeps a copy of the workspace as it stood after the replay (cold start and
traffic done, nothing improved yet); ``--resume DIR`` starts from such a copy and runs only
steps 3–5, so the improve cycle can be measured again without the 10–15 minutes before it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))
EXE = [sys.executable, "-m", "adaptloop.cli"]
PROMPT = "classify customer requests to a virtual assistant by intent"


def rows(split: str) -> list[dict]:
    with (DATASETS / "clinc150" / f"{split}.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def cli(*args: str) -> dict:
    p = subprocess.run([*EXE, *args, "--json"], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"adaptloop {args[0]} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout)


async def replay(base: str, traffic: list[dict], wrong: float, labels: list[str], seed: int) -> tuple[dict, float]:
    """Predict every input (16 per request, 8 in flight), then send feedback; returns the answers."""
    import httpx

    rng = random.Random(seed)
    answers: dict[str, dict] = {}
    sem = asyncio.Semaphore(8)
    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=120.0) as client:
        async def predict(chunk: list[dict]) -> None:
            async with sem:
                r = await client.post("/v1/predict", json={"inputs": [c["text"] for c in chunk]})
                r.raise_for_status()
                for c, o in zip(chunk, r.json()["outputs"]):
                    answers[o["trace_id"]] = {"truth": c["label"], "pred": o["label"]}

        await asyncio.gather(*(predict(traffic[i:i + 16]) for i in range(0, len(traffic), 16)))
        ids = sorted(answers)
        rng.shuffle(ids)
        fb_sem = asyncio.Semaphore(32)

        async def feedback(i: int, tid: str) -> None:
            a = answers[tid]
            bad = rng.random() < wrong
            a["wrong"] = bad
            a["feedback"] = rng.choice([lab for lab in labels if lab != a["truth"]]) if bad else a["truth"]
            async with fb_sem:
                r = await client.post("/v1/feedback", json={"trace_id": tid, "label": a["feedback"],
                                                            "source": f"user{i % 97}"})
                r.raise_for_status()

        await asyncio.gather(*(feedback(i, tid) for i, tid in enumerate(ids)))
    return answers, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wrong", type=float, default=0.2, help="share of feedback that is deliberately wrong")
    ap.add_argument("--budget", default="15m", help="improve budget")
    ap.add_argument("--cold-budget", default="3m")
    ap.add_argument("--per-intent", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--traffic", type=int, default=0, help="replay only this many (0 = all; for smoke runs)")
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--snapshot", type=Path, default=None, help="copy the workspace here after the replay")
    ap.add_argument("--resume", type=Path, default=None, help="start from a --snapshot copy: improve only")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "benchmarks"))
    import httpx
    from serve_load import running_server

    t_all = time.monotonic()
    ws = a.workspace or Path(tempfile.mkdtemp(prefix="adaptloop-clinc-prod-")) / "ws"
    if a.resume:
        shutil.copytree(a.resume, ws.parent, dirs_exist_ok=True)
        pre = json.loads((ws.parent / "before.json").read_text(encoding="utf-8"))
        seed_rows, traffic, before, cold_wall, replay_wall = (
            pre["seed_rows"], pre["traffic"], pre["before"], pre["cold_wall"], pre["replay_wall"])
        answers = json.loads((ws.parent / "answers.json").read_text(encoding="utf-8"))
    else:
        seed_rows, traffic, before, cold_wall, answers, replay_wall = prepare(a, ws)
    test = str(DATASETS / "clinc150" / "test.jsonl")
    with running_server(ws) as base:
        t0 = time.monotonic()
        imp = cli("improve", "--budget", a.budget, "-w", str(ws))
        improve_wall = time.monotonic() - t0
        time.sleep(2)
        served_after = httpx.get(base + "/healthz").json()["model_version"]
    after = cli("eval", "--data", test, "-w", str(ws))
    report = audit(a, ws, imp, answers, before, after, served_after, len(seed_rows), len(traffic))
    report["wall_seconds"] = {"cold_start": round(cold_wall, 1), "replay": round(replay_wall, 1),
                              "improve": round(improve_wall, 1), "total": round(time.monotonic() - t_all, 1)}
    if a.resume:
        report["resumed_from"] = str(a.resume)
    out = a.out or REPO / "benchmarks" / "results" / f"production-clinc150-wrong{int(a.wrong * 100):02d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=1))


def prepare(a: argparse.Namespace, ws: Path) -> tuple[list[dict], list[dict], dict, float, dict, float]:
    """Steps 1–2: cold start on the seed rows, then the traffic and its feedback through the server."""
    from serve_load import running_server

    subprocess.run([*EXE, "init", str(ws)], check=True, capture_output=True)
    train = rows("train")
    seen: dict[str, int] = {}
    seed_rows, rest = [], []
    for r in train:
        if seen.get(r["label"], 0) < a.per_intent:
            seen[r["label"]] = seen.get(r["label"], 0) + 1
            seed_rows.append(r)
        else:
            rest.append(r)
    seed_path = ws.parent / "seed.jsonl"
    seed_path.write_text("".join(json.dumps(r) + "\n" for r in seed_rows), encoding="utf-8")
    t0 = time.monotonic()
    cold = cli("new", PROMPT, "--data", str(seed_path), "--budget", a.cold_budget, "-w", str(ws))
    cold_wall = time.monotonic() - t0
    test = str(DATASETS / "clinc150" / "test.jsonl")
    before = cli("eval", "--data", test, "--model", f"v{cold['version']}", "-w", str(ws))

    traffic = rest + rows("validation")
    random.Random(a.seed).shuffle(traffic)
    traffic = traffic[: a.traffic or None]
    labels = sorted({r["label"] for r in train})
    with running_server(ws) as base:
        answers, replay_wall = asyncio.run(replay(base, traffic, a.wrong, labels, a.seed))
    answer_file = ws.parent / "answers.json"  # ground truth: never given to the agent
    answer_file.write_text(json.dumps(answers), encoding="utf-8")
    (ws.parent / "before.json").write_text(json.dumps(
        {"seed_rows": seed_rows, "traffic": traffic, "before": before, "cold_wall": cold_wall,
         "replay_wall": replay_wall}), encoding="utf-8")
    if a.snapshot:
        shutil.copytree(ws.parent, a.snapshot, dirs_exist_ok=True)
    return seed_rows, traffic, before, cold_wall, answers, replay_wall


def audit(a: argparse.Namespace, ws: Path, imp: dict, answers: dict, before: dict, after: dict,
          served_after: str, n_seed: int, n_traffic: int) -> dict:
    """Step 5: the store's audit queries, the improve run's record, and its versions on test."""
    from sqlalchemy import func, select

    from adaptloop.store.db import TraceRow, TraceUse
    from adaptloop.workspace import Workspace

    w = Workspace.open(ws)
    with w.store._session() as s:
        poison_used = s.scalar(select(func.count()).select_from(TraceUse)
                               .join(TraceRow, TraceUse.trace_id == TraceRow.id)
                               .where(TraceRow.triage == "poison"))
        uses = s.execute(select(TraceUse.trace_id, TraceUse.role)).all()
        verdicts = dict(s.execute(select(TraceRow.id, TraceRow.triage)).all())
        kinds = dict(s.execute(select(TraceRow.kind, func.count()).where(TraceRow.triage == "poison")
                               .group_by(TraceRow.kind)).all())
    wrong_ids = {t for t, v in answers.items() if v["wrong"]}
    flagged = {t for t, v in verdicts.items() if v == "poison"}
    excluded = {t for t, v in verdicts.items() if v not in ("ok", "fixable")}
    wrong_in = {role: sum(1 for t, r in uses if r == role and t in wrong_ids) for role in ("train", "dev", "eval")}
    gate = imp.get("gate") or {}
    runs = [r for r in w.store.runs() if r.id == imp.get("run_id")]
    nodes = [{"name": n.name, "strategy": n.pipeline.get("strategy"), "recipe": n.pipeline.get("recipe"),
              "status": n.status, "dev": n.dev_metrics, "train_seconds": round(n.train_seconds, 1)}
             for r in runs for n in w.store.nodes(r.id)]
    decisions = [{"kind": d.kind, "reason": d.reason} for r in runs for d in w.store.decisions(r.id)]
    test = str(DATASETS / "clinc150" / "test.jsonl")
    versions = {}
    for v in [imp.get("candidate"), *[f"v{i}" for i in range(2, 10)]]:
        if v and v not in versions and v != before["model"]:
            try:
                m = cli("eval", "--data", test, "--model", v, "-w", str(ws))
            except SystemExit:
                break
            versions[v] = {k: m[k] for k in ("accuracy", "in_scope_accuracy", "oos_recall")}
    return {
        "dataset": "clinc150", "wrong_feedback": a.wrong, "improve_budget": a.budget, "seed": a.seed,
        "machine": f"{os.cpu_count()} CPU cores", "workspace": str(ws),
        "seed_examples": n_seed, "traffic": n_traffic,
        "before": {k: before[k] for k in ("model", "accuracy", "in_scope_accuracy", "oos_recall", "macro_f1")},
        "after": {k: after[k] for k in ("model", "accuracy", "in_scope_accuracy", "oos_recall", "macro_f1")},
        "decision": imp["decision"], "reason": imp["reason"], "served_after": served_after,
        "gate": {"passed": gate.get("passed"), "n_broken": gate.get("n_broken"),
                 "sets": [{k: s[k] for k in ("eval_set", "n", "incumbent", "candidate", "ci_low", "ci_high", "fixed")}
                          | {"broken": len(s["broken"]), "broken_examples": s["broken"][:10]}
                          for s in gate.get("sets", [])]},
        "triage": imp["triage"], "poison_by_kind": kinds, "taxonomy_top": [
            {k: c[k] for k in ("name", "count")} for c in imp["taxonomy"][:8]],
        "curriculum": imp["curriculum"],
        "audit": {"poison_traces_in_any_training_dev_or_eval_set": poison_used,
                  "truly_wrong_feedback_in_set": wrong_in,
                  "wrong_feedback": len(wrong_ids),
                  "poison_precision": round(len(flagged & wrong_ids) / max(1, len(flagged)), 4),
                  "poison_recall": round(len(flagged & wrong_ids) / max(1, len(wrong_ids)), 4),
                  "excluded_recall": round(len(excluded & wrong_ids) / max(1, len(wrong_ids)), 4)},
        "improve_nodes": nodes, "improve_decisions": decisions, "versions_on_test": versions,
    }


if __name__ == "__main__":
    main()
