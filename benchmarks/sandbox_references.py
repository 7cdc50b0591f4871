"""The code sandbox against every reference solution, and against planted bad programs.

    .venv/bin/python benchmarks/sandbox_references.py

Runs each mbpp (all splits) and humaneval reference solution with its tests in
``evaluate.sandbox`` (all must pass), then three planted programs that must not: an infinite
loop, a network call and a file write outside the sandbox's temp dir. Prints the counts and
writes benchmarks/results/sandbox-references.json.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from adaptloop.evaluate.sandbox import SandboxConfig, pass_at_1, run_program

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))


def rows(name: str, split: str) -> list[dict]:
    path = DATASETS / name / f"{split}.jsonl"
    return [json.loads(x) for x in path.read_text(encoding="utf-8").split("\n") if x.strip()] if path.is_file() else []


def main() -> None:
    cfg = SandboxConfig()
    report: dict = {"config": cfg.__dict__, "sets": {}}
    t0 = time.perf_counter()
    for split in ("train", "validation", "test", "prompt"):
        mb = rows("mbpp", split)
        r = pass_at_1([x["code"] for x in mb], ["\n".join([x["test_setup_code"], *x["test_list"]]) for x in mb], cfg)
        report["sets"][f"mbpp/{split}"] = {"n": r["n"], "passed": sum(x["passed"] for x in r["rows"]),
                                           "failures": [x for x in r["rows"] if not x["passed"]][:5]}
    he = rows("humaneval", "test")
    r = pass_at_1([x["prompt"] + x["canonical_solution"] for x in he],
                  [f"{x['test']}\n\ncheck({x['entry_point']})" for x in he], cfg)
    report["sets"]["humaneval/test"] = {"n": r["n"], "passed": sum(x["passed"] for x in r["rows"]),
                                        "failures": [x for x in r["rows"] if not x["passed"]][:5]}
    outside = Path(tempfile.gettempdir()) / "adaptloop-sandbox-escape.txt"
    planted = {
        "infinite loop": "def f():\n    while True:\n        pass\nf()\n",
        "network call": "import urllib.request\nurllib.request.urlopen('http://example.com', timeout=2)\n",
        "write outside": f"open({str(outside)!r}, 'w').write('escaped')\n",
    }
    report["planted"] = {}
    for name, src in planted.items():
        res = run_program(src, SandboxConfig(timeout=5, cpu_seconds=2))
        report["planted"][name] = {"passed": res.passed, "status": res.status, "detail": res.detail}
    report["planted"]["write outside"]["file_created"] = outside.exists()
    report["seconds"] = round(time.perf_counter() - t0, 1)
    for k, v in report["sets"].items():
        print(f"{k}: {v['passed']}/{v['n']} reference solutions pass")
    for k, v in report["planted"].items():
        print(f"planted {k}: {v['status']} ({v['detail']})")
    out = REPO / "benchmarks" / "results" / "sandbox-references.json"
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"{report['seconds']}s; wrote {out}")


if __name__ == "__main__":
    main()
