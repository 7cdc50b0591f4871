"""Harvest the portfolio prior that ships with the package from the benchmark results.

    .venv/bin/python benchmarks/portfolio.py [--check]

Reads every cold-start graph kept under benchmarks/results (``coldstart-*.json``: classification,
dev accuracy; ``extraction-*.json``: entity F1 on dev) and writes one outcome per finished node
that has a scored parent: the intervention (the node's move), its dev gain over the parent, its
training seconds, and the task it ran on (family, dataset, training examples, classes or entity
types, base encoder), with its provenance (results file, run, node id). The result is
``adaptloop/search/portfolio.json``, which ``search.portfolio.prior`` reads so that a fresh
workspace starts from what paid off on similar tasks. ``--check`` only compares: it exits 1 when
the shipped file is not what the results give (the file is generated, never edited by hand).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))
OUT = REPO / "adaptloop" / "search" / "portfolio.json"
BASE = "sentence-transformers/all-MiniLM-L6-v2"


def _task(dataset: str, family: str, cache: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """(training examples, classes or entity types) of a public dataset, read from its train.jsonl."""
    if dataset not in cache:
        with (DATASETS / dataset / "train.jsonl").open(encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        if family == "extraction":  # character spans, or BIO tags on tokens
            kinds = {sp["label"] for r in rows for sp in r.get("spans", ())} | {
                t.split("-", 1)[1] for r in rows for t in r.get("tags", ()) if t != "O"}
        else:
            kinds = {r["label"] for r in rows}
        cache[dataset] = (len(rows), len(kinds))
    return cache[dataset]


def _outcomes(nodes: list[dict], score, task: dict, source: str) -> list[dict]:
    by_id = {n["id"]: n for n in nodes}
    out = []
    for n in nodes:
        parent = by_id.get(n.get("parent_id"))
        if n.get("status") != "done" or parent is None or score(n) is None or score(parent) is None:
            continue
        if n.get("move") == "abstain":  # a serving step after the search (agent/abstain.py), not a move it plays
            continue
        out.append({**task, "intervention": n.get("move") or n["name"], "gain": round(score(n) - score(parent), 5),
                    "cost_s": round(float(n.get("train_seconds") or 0.0), 1), "source": f"{source}#node{n['id']}"})
    return out


def harvest(results: Path = RESULTS) -> list[dict]:
    """Every outcome the kept cold-start graphs hold, in a stable order."""
    sizes: dict[str, tuple[int, int]] = {}
    out: list[dict] = []
    for path in sorted(results.glob("coldstart-*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        n, k = _task(doc["dataset"], "classification", sizes)
        for i, r in enumerate(doc["results"]):
            if r.get("nodes"):
                task = {"family": "classification", "dataset": doc["dataset"], "n_train": n, "n_classes": k,
                        "encoder": BASE, "date": doc.get("date")}
                out += _outcomes(r["nodes"], lambda x: x.get("dev_accuracy"), task, f"{path.name}/results[{i}]")
    for path in sorted(results.glob("extraction-*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        n, k = _task(doc["dataset"], "extraction", sizes)
        base = next((x.get("encoder") for x in doc["nodes"] if x.get("parent_id") is None), BASE)
        task = {"family": "extraction", "dataset": doc["dataset"], "n_train": n, "n_classes": k, "encoder": base,
                "date": None}
        out += _outcomes(doc["nodes"], lambda x: (x.get("dev") or {}).get("f1"), task, path.name)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if the shipped file differs from the results")
    a = ap.parse_args()
    doc = {"what": "outcomes of the cold-start graphs kept under benchmarks/results (benchmarks/portfolio.py)",
           "outcomes": harvest()}
    text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    if a.check:
        same = OUT.exists() and OUT.read_text(encoding="utf-8") == text
        print("portfolio.json is up to date" if same else "portfolio.json differs: run benchmarks/portfolio.py")
        sys.exit(0 if same else 1)
    OUT.write_text(text, encoding="utf-8")
    print(f"{len(doc['outcomes'])} outcomes written to {OUT}")


if __name__ == "__main__":
    main()
