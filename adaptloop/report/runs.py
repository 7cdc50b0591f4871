"""Runs as plain JSON-able dicts (what `adaptloop runs --json` prints), and a run's HTML page written to disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from adaptloop.agent.coldstart import _node_dict
from adaptloop.errors import NotFoundError
from adaptloop.report.html import write_report
from adaptloop.report.view import build_view, latest_run
from adaptloop.store.db import EvalSetRow, LLMCall
from adaptloop.workspace import Workspace

__all__ = ["runs_listing", "write_run_report"]


def runs_listing(ws: Workspace, run: int | None = None) -> list[dict[str, Any]]:
    """Every run (or the one numbered ``run``): its budget, eval set, nodes and decisions.

    Raises:
        NotFoundError: ``run`` is given and there is no such run.
    """
    rows = [r for r in ws.store.runs() if run is None or r.id == run]
    if run is not None and not rows:
        raise NotFoundError(f"no run {run}; `adaptloop runs` lists them")
    report = []
    for r in rows:
        report.append({
            "id": r.id, "task_id": r.task_id, "kind": r.kind, "status": r.status,
            "budget_s": r.budget_s, "spent_s": round(r.spent_s, 1), "eval_set_id": r.eval_set_id,
            "eval_set_created_at": (ws.store.get(EvalSetRow, r.eval_set_id).created_at.isoformat()
                                    if r.eval_set_id else None),
            "started_at": r.started_at.isoformat(),
            "nodes": [_node_dict(n) for n in ws.store.nodes(r.id)],
            "decisions": [{"kind": d.kind, "reason": d.reason, "at": d.created_at.isoformat()}
                          for d in ws.store.decisions(r.id)],
            "llm": llm_usage(ws, r.id),
        })
    return report


def llm_usage(ws: Workspace, run_id: int) -> dict[str, Any]:
    """What the run asked of the LLM: requests, how many were followed, tokens and their cost at ``[llm]`` prices."""
    calls = ws.store.all(select(LLMCall).where(LLMCall.run_id == run_id))
    tin, tout = sum(c.prompt_tokens for c in calls), sum(c.completion_tokens for c in calls)
    cfg = ws.settings.llm
    roles: dict[str, int] = {}
    for c in calls:
        roles[c.role] = roles.get(c.role, 0) + 1
    return {"requests": len(calls), "followed": sum(c.outcome == "followed" for c in calls), "by_role": roles,
            "prompt_tokens": tin, "completion_tokens": tout,
            "cost": round((tin * cfg.price_in + tout * cfg.price_out) / 1e6, 6)}


def write_run_report(ws: Workspace, run: int | None = None, out_path: Path | None = None) -> dict[str, Any]:
    """Write the self-contained HTML page of ``run`` (default: the latest) to ``out_path`` (default:
    ``WORKSPACE/reports/run-N.html``); what was written, and how many nodes and findings it shows."""
    run_id = run if run is not None else latest_run(ws)
    view = build_view(ws, run_id)
    out = out_path or ws.root / "reports"
    path = write_report(view, out / f"run-{run_id}.html" if out.is_dir() or out_path is None else out)
    return {"run": run_id, "report": str(path), "nodes": len(view["nodes"]), "findings": len(view["findings"])}
