"""What is stored, as plain JSON-able dicts: the doctrine and what it learned, the registry, traces.

Each function reads the workspace and returns what ``--json`` prints; the terminal renderers
(:mod:`adaptloop.report.terminal`, :mod:`adaptloop.report.terminal_production`) print the same dicts.
Runs and their HTML page are :mod:`adaptloop.report.runs` (heavier imports: the agent, the view).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from adaptloop.agent.doctrine import REGIMES, STANDING, STANDING_EXTRACTION
from adaptloop.agent.generation_moves import GENERATION_MOVES
from adaptloop.search import portfolio
from adaptloop.search.interventions import CATALOGUE
from adaptloop.store import registry
from adaptloop.store.db import Outcome, Quarantine, TraceRow
from adaptloop.workspace import Workspace

__all__ = ["doctrine_listing", "models_listing", "trace_quarantine_listing", "traces_listing"]


def doctrine_listing(ws: Workspace) -> dict[str, Any]:
    """The regimes, the intervention catalogue, the generation moves, and the outcomes learned per family."""
    families = sorted({o.family for o in ws.store.all(select(Outcome))})
    learned = {fam: ws.store.learned(fam) for fam in families}
    return {
        "regimes": [{"name": r.name, "when": r.when, "prefer": list(r.prefer), "says": r.says} for r in REGIMES],
        "interventions": [{"name": i.name, "family": i.family, "tasks": list(i.tasks),
                           "standing": [t for t, names in (("classification", STANDING),
                                                           ("extraction", STANDING_EXTRACTION))
                                        if t in i.tasks and i.name in names],
                           "hypothesis": i.hypothesis.format(target="")} for i in CATALOGUE],
        "generation": [{"name": n, "when": w, "does": d} for n, w, d in GENERATION_MOVES],
        "learned": {fam: {k: {"n": n, "mean_gain": round(g, 5), "mean_seconds": round(c, 1)}
                          for k, (n, g, c) in sorted(d.items(), key=lambda kv: -kv[1][1])}
                    for fam, d in learned.items()},
        "portfolio": _portfolio(),
    }


def _portfolio() -> dict[str, Any]:
    """The shipped prior (``search.portfolio``) per family: its tasks and each intervention's outcomes."""
    out: dict[str, Any] = {}
    for o in portfolio.outcomes():
        fam = out.setdefault(o["family"], {"tasks": {}, "interventions": {}})
        fam["tasks"][o["dataset"]] = {"n_train": o["n_train"], "n_classes": o["n_classes"]}
        fam["interventions"].setdefault(o["intervention"], []).append(o["gain"])
    for fam in out.values():
        means = {k: (len(g), sum(g) / len(g)) for k, g in fam["interventions"].items()}
        fam["interventions"] = {k: {"n": n, "mean_gain": round(g, 5)}
                                for k, (n, g) in sorted(means.items(), key=lambda kv: -kv[1][1])}
    return out


def models_listing(ws: Workspace) -> dict[str, Any]:
    """The registry: where each alias points, every version with its lineage, and every event."""
    vs, evs = registry.versions(ws.store), registry.events(ws.store)
    aliases: dict[str, int] = {}
    for e in evs:
        if e.alias:
            aliases[e.alias] = e.version_id
    return {
        "aliases": {k: f"v{v}" for k, v in aliases.items()},
        "versions": [{"version": f"v{v.id}", "task_id": v.task_id, "node_id": v.node_id,
                      "artifact": v.artifact, "metrics": v.metrics, "lineage": v.lineage,
                      "aliases": [a for a, vid in aliases.items() if vid == v.id],
                      "created_at": v.created_at.isoformat()} for v in vs],
        "events": [{"version": f"v{e.version_id}", "event": e.event, "alias": e.alias,
                    "reason": e.reason, "at": e.created_at.isoformat()} for e in evs],
    }


def traces_listing(ws: Workspace, triage: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The newest ``limit`` traces (only those with the verdict ``triage``; ``unjudged``: none yet), with
    their feedback and triage."""
    stmt = select(TraceRow).order_by(TraceRow.ts.desc()).limit(limit)
    if triage == "unjudged":
        stmt = stmt.where(TraceRow.triage.is_(None))
    elif triage:
        stmt = stmt.where(TraceRow.triage == triage)
    return [{"id": r.id, "ts": r.ts.isoformat(), "model_version": r.model_version, "input": r.input,
             "output": r.output, "feedback": {"label": r.feedback_label, "verdict": r.feedback_verdict,
                                              "source": r.feedback_source,
                                              **({"entities": r.feedback_spans} if r.feedback_spans is not None
                                                 else {})},
             "triage": r.triage, "kind": r.kind, "reason": r.reason, "trust": r.trust} for r in ws.store.all(stmt)]


def trace_quarantine_listing(ws: Workspace, limit: int = 50) -> list[dict[str, Any]]:
    """Malformed trace lines set aside at import: file, line number, reason and the raw line."""
    rows = ws.store.all(select(Quarantine).where(Quarantine.source.like("traces:%"))
                        .order_by(Quarantine.id).limit(limit))
    return [{"file": q.source.removeprefix("traces:"), "line": q.line_no, "reason": q.reason, "raw": q.raw}
            for q in rows]
