"""One run as a plain dict (the "view" the HTML report and the terminal tree render)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from adaptloop.errors import NotFoundError
from adaptloop.evaluate.metrics import primary, scalars
from adaptloop.search import graph
from adaptloop.search.graph import GraphNode
from adaptloop.store import registry
from adaptloop.store.db import Run, Task
from adaptloop.types import TaskSpec
from adaptloop.workspace import Workspace

TOP_CONFUSIONS = 30


def latest_run(ws: Workspace) -> int:
    runs = ws.store.runs()
    if not runs:
        raise NotFoundError("no runs yet; start one with `adaptloop new PROMPT --data FILE`")
    return runs[-1].id


def build_view(ws: Workspace, run_id: int) -> dict[str, Any]:
    """Everything a person needs to read one run: graph, curves, findings, decisions, confusions.

    Raises:
        NotFoundError: no such run.
    """
    store = ws.store
    run: Run | None = store.get(Run, run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id}; `adaptloop runs` lists them")
    task: Task = store.get(Task, run.task_id)
    spec = TaskSpec.from_dict(task.spec)
    metric = spec.primary_metric
    rows = store.nodes(run_id)
    versions = registry.versions(store)
    winner_ids = {v.node_id for v in versions if (v.lineage or {}).get("run_id") == run_id}
    rolled = {e.data.get("from") for e in registry.events(store) if e.event == "rolled_back" and e.data}
    rolled_nodes = {v.node_id for v in versions if v.id in rolled}
    names = {n.id: n.name for n in rows}
    gnodes = [GraphNode(name=n.name, parent=names.get(n.parent_id) if n.parent_id else None,
                        pipeline=n.pipeline, status=n.status,
                        score=primary(n.dev_metrics, metric) if n.dev_metrics else 0.0) for n in rows]
    gone = graph.dropped(gnodes)
    decisions = store.decisions(run_id)
    stops = [d.reason for d in decisions if d.kind == "stop"]
    nodes = [{"id": n.id, "name": n.name, "parent_id": n.parent_id, "status": n.status,
              "intervention": n.intervention, "reason": n.reason, "pipeline": n.pipeline,
              "dev": n.dev_metrics or {}, "eval": scalars(n.eval_metrics or {}) or None,
              "train_seconds": round(n.train_seconds, 1), "texts_per_second": n.texts_per_second,
              "winner": n.id in winner_ids,
              "dropped": n.name in gone, "curve": n.curve or [], "move": n.move, "finding": n.finding,
              "proposer": n.proposer, "rolled_back": n.id in rolled_nodes}
             for n in rows]
    confusions: list[dict[str, Any]] = []
    per_class: dict[str, Any] = {}
    for n in rows:
        if n.id in winner_ids and n.predictions_artifact and (n.eval_metrics or {}).get("per_type"):
            from adaptloop.diagnose.entities import entity_errors

            errs = entity_errors(ws.artifacts.get_jsonl(n.predictions_artifact))
            confusions = [{"label": a, "pred": b, "count": c}
                          for (a, b), c in errs["type_pairs"].most_common(TOP_CONFUSIONS)]
            per_class = n.eval_metrics["per_type"]
        elif n.id in winner_ids and n.predictions_artifact and (n.eval_metrics or {}).get("per_class"):
            pairs = Counter((r["label"], r["pred"]) for r in ws.artifacts.get_jsonl(n.predictions_artifact)
                            if r["label"] != r["pred"])
            confusions = [{"label": a, "pred": b, "count": c} for (a, b), c in pairs.most_common(TOP_CONFUSIONS)]
            per_class = n.eval_metrics["per_class"]
    return {
        "run": {"id": run.id, "task": task.name if task else "", "status": run.status, "budget_s": run.budget_s,
                "spent_s": round(run.spent_s, 1), "stop_reason": stops[-1] if stops else "",
                "primary_metric": metric, "started_at": run.started_at.isoformat(),
                "family": spec.family,
                "eval_set_id": run.eval_set_id, "prompt": task.prompt if task else ""},
        "nodes": nodes,
        "findings": [{"node_id": f.node_id, "kind": f.kind, "summary": f.summary, "severity": f.severity,
                      "target": f.target, "evidence": f.evidence, "suggests": f.suggests}
                     for f in store.findings(run_id)],
        "decisions": [{"at": d.created_at.isoformat(), "kind": d.kind, "reason": d.reason, "data": d.data}
                      for d in decisions],
        "confusions": confusions,
        "per_class": per_class,
    }
