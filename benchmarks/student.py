"""A banking77 cold-start model and its distilled student: test accuracy, throughput, latency, peer.

    .venv/bin/python benchmarks/student.py                         # cold start, distil, measure both
    .venv/bin/python benchmarks/student.py --workspace WS          # reuse a workspace this script built
    .venv/bin/python benchmarks/student.py --workspace WS --no-teacher-load  # the student's load test only
    .venv/bin/python benchmarks/student.py --workspace WS --teacher v2 --probes 0   # another student of v2

1. `adaptloop new` on banking77's train split (``--budget``), unless ``--workspace`` holds a model,
   with the defaults: a winner slower than ``[serve] min_throughput`` gets a distilled student, gated
   against it, and production is exported to ONNX under the parity check;
2. when `new` distilled none (or ``--layers L`` asks for one by hand): `adaptloop distill --promote`
   (before any traffic: the test texts that the load test sends later must never reach a student
   as unlabelled traffic);
3. `adaptloop eval` of teacher and student on the whole test split;
4. `benchmarks/serve_load.py --hold --onnx --peer` on the student (production after step 2), then
   `adaptloop rollback` and the same on the teacher: each exported to ONNX under its parity check,
   closed loop at concurrency 32 and open loop at 50 requests/s, beside the hand-written peer.

Prints and writes benchmarks/results/student-banking77.json (the two load reports beside it:
serve-load-student.json, serve-load-teacher.json).
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
RESULTS = REPO / "benchmarks" / "results"


def cli(*args: str, ws: Path) -> dict:
    """One adaptloop command with --json; its JSON answer (the last line that parses)."""
    t0 = time.monotonic()
    done = subprocess.run([*EXE, *args, "--json", "-w", str(ws)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"adaptloop {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    out = json.loads(done.stdout)
    print(f"adaptloop {args[0]}: {time.monotonic() - t0:.0f}s", flush=True)
    return out


def load(ws: Path, name: str, requests: int) -> dict:
    out = RESULTS / f"serve-load-{name}.json"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "serve_load.py"), "--workspace", str(ws), "--hold",
                    "--onnx", "--peer", "--requests", str(requests), "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    r = json.loads(out.read_text(encoding="utf-8"))
    ours = r["adaptloop"]
    peer = r.get("peer") if isinstance(r.get("peer"), dict) else None
    return {"closed_rps": ours["closed_loop"]["throughput_rps"], "closed_p99_ms": ours["closed_loop"]["p99_ms"],
            "open_p99_ms": ours["open_loop"]["p99_ms"], "open_rate": ours["open_loop"]["rate_rps"],
            "serves": {v: e["serves"] for v, e in ours["exports"].items()},
            "peer_closed_rps": peer["closed_loop"]["throughput_rps"] if peer else None,
            "peer_open_p99_ms": peer["open_loop"]["p99_ms"] if peer else None,
            "ratio_to_peer": r.get("throughput_ratio"), "report": str(out.relative_to(REPO))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", default="10m", help="the cold start's budget")
    ap.add_argument("--distill-budget", default="15m")
    ap.add_argument("--layers", type=int, default=None,
                    help="distil by hand with this many layers (default: the student `new` distilled itself, "
                         "[serve] min_throughput; by hand with [serve] student_layers when it made none)")
    ap.add_argument("--teacher", default=None,
                    help="distil this version by hand (--layers or [serve] student_layers) and keep the student a "
                         "candidate: a comparison of students of one teacher, production untouched")
    ap.add_argument("--probes", type=float, default=None,
                    help="probe texts per training text for a student distilled by hand (default: [serve] "
                         "student_probes)")
    ap.add_argument("--requests", type=int, default=5000, help="closed-loop requests per load test")
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--no-teacher-load", action="store_true",
                    help="skip the teacher's load test (its last report stays in serve-load-teacher.json)")
    ap.add_argument("--out", type=Path, default=RESULTS / "student-banking77.json")
    a = ap.parse_args()
    t0 = time.monotonic()
    ws = a.workspace or Path(tempfile.mkdtemp(prefix="adaptloop-student-")) / "ws"
    data = DATASETS / "banking77"
    report: dict = {"machine": f"{os.cpu_count()} CPU cores, client on the same machine", "workspace": str(ws)}
    if not (ws / "adaptloop.toml").is_file():
        subprocess.run([*EXE, "init", str(ws)], check=True, capture_output=True)
    models = cli("models", ws=ws)
    if "production" not in models["aliases"]:
        new = cli("new", "route banking customer messages to one of 77 intents", "--data",
                  str(data / "train.jsonl"), "--budget", a.budget, ws=ws)
        winner = new.get("winner") or {}
        report["cold_start"] = {"winner": winner.get("node"), "pipeline": winner.get("pipeline"), "budget": a.budget}
        sized = new.get("serving") or {}
        report["cold_start"]["serving"] = sized.get("reason")
        report["cold_start"]["export"] = (new.get("export") or {}).get("reason")
        d = sized.get("distill")  # `new` distilled a student itself ([serve] min_throughput)
    else:
        d = None
    if d is None or a.layers is not None or a.teacher:
        teacher = a.teacher or (d["teacher"] if d else cli("models", ws=ws)["aliases"]["production"])
        d = cli("distill", *(["--layers", str(a.layers)] if a.layers else []), "--model", teacher,
                "--budget", a.distill_budget, *([] if a.teacher else ["--promote"]),
                *(["--probes", str(a.probes)] if a.probes is not None else []), ws=ws)
    teacher = d["teacher"]
    report["distill"] = {k: d[k] for k in ("decision", "reason", "teacher", "student", "texts_per_second",
                                           "wall_seconds", "fit")}
    report["distill"]["gate"] = [{"eval_set": r["eval_set"], "n": r["n"], "teacher": r["incumbent"],
                                  "student": r["candidate"], "broken": len(r["broken"]), "fixed": r["fixed"]}
                                 for r in d["gate"]["sets"]]
    student = d["student"]
    for name, version in (("teacher", teacher), ("student", student)):
        ev = cli("eval", "--data", str(data / "test.jsonl"), "--model", version, ws=ws)
        report[name] = {"version": version, "test_accuracy": ev["accuracy"], "test_n": ev["n"]}
    if d["decision"] == "promoted":
        report["student"]["load"] = load(ws, "student", a.requests)
        cli("rollback", "--reason", "benchmark: measure the teacher", ws=ws)
    if not a.no_teacher_load:
        report["teacher"]["load"] = load(ws, "teacher", a.requests)
    report["accuracy_gap_points"] = round(100 * (report["teacher"]["test_accuracy"]
                                                 - report["student"]["test_accuracy"]), 2)
    report["wall_s"] = round(time.monotonic() - t0, 1)
    a.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
