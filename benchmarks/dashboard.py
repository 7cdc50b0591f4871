"""The web dashboard in a real browser: screenshots of every page, and page-load times on a big workspace.

    .venv/bin/python benchmarks/dashboard.py screenshots WORKSPACE [--out docs/img]
    .venv/bin/python benchmarks/dashboard.py load [--traces 50000 --runs 20] [--keep DIR]

``screenshots`` serves WORKSPACE's dashboard (``adaptloop ui``'s app, read-only) and saves every page at
1280 px and at 390 px (a phone) as ``dashboard-<page>[-phone].png``. Any workspace works; the ones in
docs/ come from ``benchmarks/production_clinc.py --snapshot DIR`` (a cold start on clinc150, 16,690 traces
of replayed traffic with feedback, and one improve cycle).

``load`` builds a workspace with ``--runs`` runs (cold starts and improve cycles behind the fake trainer,
seconds each) and ``--traces`` traces spread over a week, with feedback and triage verdicts on most, then
opens each page in headless Chromium (Debian's, through playwright) and reports the time to the load
event, median of 5, and the server's time for the HTML; writes benchmarks/results/dashboard-load.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTHS = {"": (1280, 900), "-phone": (390, 844)}
MAX_HEIGHT = 2000  # a desktop screenshot shows the top of a long page


def pages(ws) -> dict[str, str]:
    """Page name → path: the four pages and the newest run."""
    runs = ws.store.runs()
    out = {"runs": "/", "models": "/models", "traffic": "/traffic", "task": "/task"}
    if runs:
        out["run"] = f"/runs/{runs[-1].id}"
    return out


def screenshots(root: Path, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    from adaptloop.serve.app import create_ui_app, in_background
    from adaptloop.workspace import Workspace

    ws = Workspace.open(root)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with in_background(create_ui_app(ws)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for suffix, (w, h) in WIDTHS.items():
            page = browser.new_page(viewport={"width": w, "height": h})
            for name, path in pages(ws).items():
                page.goto(url + path, wait_until="load")
                target = out / f"dashboard-{name}{suffix}.png"
                height = min(page.evaluate("document.documentElement.scrollHeight"), MAX_HEIGHT) if not suffix else h
                page.screenshot(path=str(target), full_page=True, clip={"x": 0, "y": 0, "width": w, "height": height})
                written.append(target)
                print(f"wrote {target.relative_to(REPO) if target.is_relative_to(REPO) else target}")
            page.close()
        browser.close()
    return written


def build_big(root: Path, n_traces: int, n_runs: int, seed: int = 0) -> None:
    """A workspace with ``n_runs`` runs (alternating cold starts and improve cycles, fake trainer) and
    ``n_traces`` traces with feedback and verdicts, spread over a week."""
    from adaptloop.agent.coldstart import cold_start
    from adaptloop.agent.improve import ImproveCycle
    from adaptloop.data.sources import load_classification
    from adaptloop.store.db import TraceRow
    from adaptloop.train.fake import FakeTrainer, _features
    from adaptloop.workspace import Workspace, init_workspace
    from tests.conftest import read_fixture, subset, write_jsonl

    rng = random.Random(seed)
    ws = Workspace.open(init_workspace(root))
    ws.settings.search.workers = 1
    sample = read_fixture("banking77_sample.jsonl")
    rows = subset(sample, 6, 12)
    labels = sorted({r["label"] for r in rows})
    data = load_classification(write_jsonl(root / "train.jsonl", rows))
    t0 = dt.datetime(2026, 11, 20)
    made = 0
    for i in range(n_runs):
        if i % 2 == 0 or not ws.store.runs():
            cold_start(ws, data, "route banking messages", 20, make_trainer=lambda s: FakeTrainer(),
                       embed_fn=_features)
        else:
            batch = []
            for _ in range(max(1, n_traces // n_runs)):
                r = rng.choice(sample)
                batch.append({"id": f"t{made}", "ts": t0 + dt.timedelta(seconds=rng.randrange(7 * 86400)),
                              "model_version": "v1", "input": r["text"], "output": {"label": rng.choice(labels)},
                              "feedback_label": rng.choice(labels) if rng.random() < 0.6 else None,
                              "feedback_source": f"agent_{rng.randrange(40)}", "meta": {"latency_ms": rng.gauss(40, 8)},
                              "origin": "serve"})
                made += 1
            ws.store.add_traces(batch)
            ImproveCycle(ws, 20, make_trainer=lambda s: FakeTrainer(), embed_fn=_features).run()
        print(f"run {i + 1}/{n_runs} done", flush=True)
    rest = []
    while made < n_traces:
        r = rng.choice(sample)
        rest.append({"id": f"t{made}", "ts": t0 + dt.timedelta(seconds=rng.randrange(7 * 86400)),
                     "model_version": "v1", "input": r["text"], "output": {"label": rng.choice(labels)},
                     "meta": {"latency_ms": rng.gauss(40, 8)}, "origin": "serve"})
        made += 1
    ws.store.add_traces(rest)
    with ws.store.session() as s:  # verdicts on most, as cycles would leave them
        for row in s.query(TraceRow).filter(TraceRow.triage.is_(None)).limit(int(0.8 * n_traces)):
            row.triage = rng.choices(["ok", "fixable", "poison", "out_of_scope"], [0.6, 0.25, 0.1, 0.05])[0]
            row.kind = {"poison": "label_noise", "fixable": "confusable"}.get(row.triage, "")
            row.reason = f"synthetic verdict {row.triage}"


def load_times(root: Path, repeats: int = 5) -> dict[str, dict[str, float]]:
    import httpx
    from playwright.sync_api import sync_playwright

    from adaptloop.serve.app import create_ui_app, in_background
    from adaptloop.workspace import Workspace

    ws = Workspace.open(root)
    out = {}
    with in_background(create_ui_app(ws)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        for name, path in pages(ws).items():
            server, browser_ms = [], []
            for _ in range(repeats):
                t = time.perf_counter()
                httpx.get(url + path, timeout=60).raise_for_status()
                server.append(1000 * (time.perf_counter() - t))
                t = time.perf_counter()
                page.goto(url + path, wait_until="load")
                browser_ms.append(1000 * (time.perf_counter() - t))
            out[name] = {"html_ms": round(statistics.median(server), 1),
                         "load_ms": round(statistics.median(browser_ms), 1)}
            print(f"{name:8s} html {out[name]['html_ms']:7.1f} ms   load event {out[name]['load_ms']:7.1f} ms")
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("screenshots", help="every page of WORKSPACE, at 1280 px and 390 px")
    s.add_argument("workspace", type=Path)
    s.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    lo = sub.add_parser("load", help="page-load times on a workspace with many traces and runs")
    lo.add_argument("--traces", type=int, default=50_000)
    lo.add_argument("--runs", type=int, default=20)
    lo.add_argument("--keep", type=Path, help="build the workspace here and keep it (default: a temp dir)")
    args = ap.parse_args()
    if args.cmd == "screenshots":
        screenshots(args.workspace, args.out)
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="adaptloop-dash-")) / "ws"
    t = time.perf_counter()
    if not (root / "adaptloop.toml").exists():
        build_big(root, args.traces, args.runs)
    print(f"workspace {root}: built in {time.perf_counter() - t:.0f} s")
    times = load_times(root)
    from adaptloop.workspace import Workspace

    ws = Workspace.open(root)
    result = {"what": "dashboard page load (median of 5): server time for the HTML, and headless Chromium's time to "
                      "the load event", "traces": ws.store.trace_summary()["traces"], "runs": len(ws.store.runs()),
              "pages": times, "machine": f"{os.cpu_count()} CPU cores",
              "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    path = REPO / "benchmarks" / "results" / "dashboard-load.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
