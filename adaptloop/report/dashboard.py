"""What the web dashboard shows, as plain JSON-able dicts read from the store: runs, the model registry
with its gate results, traffic and triage, and the task with its frozen eval sets.

Pure reads; every list is bounded (the trace table pages, charts aggregate), so a page stays quick on a
workspace with tens of thousands of traces. The HTTP side (templates, routes, live updates) is
:mod:`adaptloop.serve.dashboard`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, case, cast, func, or_, select

from adaptloop.evaluate.metrics import primary
from adaptloop.store import registry
from adaptloop.store.db import (
    Dataset,
    Decision,
    EvalSetRow,
    FeedbackEvent,
    Node,
    Quarantine,
    RegistryEvent,
    Run,
    Task,
    TraceRow,
    has_feedback,
)
from adaptloop.types import TaskSpec
from adaptloop.workspace import Workspace

__all__ = ["TraceFilter", "models_timeline", "runs_overview", "stamp", "task_overview", "trace_table",
           "traffic_overview"]

BUCKETS = 48  # bars in a traffic chart
LATENCY_SAMPLE = 5_000  # newest traces whose latency is charted
BROKEN_SHOWN = 25  # broken examples listed per eval set of a gate
POISON_SHOWN = 20  # newest poison traces listed; the trace table filters the rest
PAGE = 50  # trace table rows per page


def stamp(ws: Workspace) -> str:
    """A short fingerprint of everything the pages show; it changes when a node, decision, registry event,
    feedback or trace is added or a run or node changes state (what the pages poll to update live)."""
    with ws.store.session() as s:
        parts = [s.scalar(select(func.max(Node.id))), s.scalar(select(func.max(Decision.id))),
                 s.scalar(select(func.max(RegistryEvent.id))), s.scalar(select(func.max(FeedbackEvent.id))),
                 s.scalar(select(func.count()).select_from(TraceRow)),  # a triage is a cycle's decisions too
                 tuple(s.execute(select(Run.id, Run.status, Run.spent_s)).all()),
                 tuple(s.execute(select(Node.id, Node.status)).all())]
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


def _spec(ws: Workspace, task_id: int) -> TaskSpec | None:
    task = ws.store.get(Task, task_id)
    return TaskSpec.from_dict(task.spec) if task is not None else None


def runs_overview(ws: Workspace) -> list[dict[str, Any]]:
    """Every cold start and improve cycle, newest first: status, budget, nodes, best dev score, outcome."""
    store = ws.store
    run_of = {v.id: (v.lineage or {}).get("run_id") for v in registry.versions(store)}
    promoted = {run_of.get(e.version_id): f"v{e.version_id}" for e in registry.events(store)
                if e.event in ("promoted", "forced")}  # a refused candidate is registered too, never promoted
    out = []
    for r in reversed(store.runs()):
        spec = _spec(ws, r.task_id)
        metric = spec.primary_metric if spec else "accuracy"
        nodes = store.nodes(r.id)
        scores = [primary(n.dev_metrics, metric) for n in nodes if n.dev_metrics]
        decisions = store.decisions(r.id)
        ends = [d for d in decisions if d.kind in ("promoted", "refused", "refuse", "no-op", "stop", "rolled_back",
                                                   "watchdog", "failed", "interrupted")]
        out.append({"id": r.id, "kind": r.kind, "status": r.status, "task": (store.get(Task, r.task_id).name
                                                                            if spec else ""),
                    "started_at": r.started_at, "finished_at": r.finished_at, "budget_s": r.budget_s,
                    "spent_s": r.spent_s, "nodes": len(nodes), "failed": sum(n.status == "failed" for n in nodes),
                    "running": sum(n.status == "running" for n in nodes), "metric": metric,
                    "best": max(scores) if scores else None, "version": promoted.get(r.id),
                    "proposers": dict(Counter(n.proposer or "doctrine" for n in nodes)),
                    "outcome": ends[-1].kind if ends else "", "why": ends[-1].reason if ends else ""})
    return out


def models_timeline(ws: Workspace) -> dict[str, Any]:
    """The registry as a timeline, newest first: each event with its version, reason, who, and the gate
    that decided it (every eval set's scores, interval, and the broken examples side by side)."""
    store = ws.store
    versions = {v.id: v for v in registry.versions(store)}
    nodes = {n.id: n for n in store.all(select(Node).where(Node.id.in_([v.node_id for v in versions.values()])))}
    stack = registry.production_stack(store)
    events = []
    for e in reversed(registry.events(store)):
        v = versions.get(e.version_id)
        node = nodes.get(v.node_id) if v else None
        data = e.data or {}
        events.append({"id": e.id, "version": f"v{e.version_id}", "event": e.event, "alias": e.alias,
                       "reason": e.reason, "at": e.created_at, "who": data.get("who"),
                       "run_id": (v.lineage or {}).get("run_id") if v else None,
                       "node": node.name if node else None, "gate": _gate(data) if "sets" in data else None})
    return {"production": f"v{stack[-1]}" if stack else None,
            "candidate": (f"v{registry.alias_target(store, 'candidate')}"
                          if registry.alias_target(store, "candidate") else None),
            "versions": [{"version": f"v{v.id}", "node": nodes[v.node_id].name if v.node_id in nodes else "",
                          "run_id": (v.lineage or {}).get("run_id"), "created_at": v.created_at,
                          "metrics": _scalars((v.metrics or {}).get("eval") or v.metrics or {})}
                         for v in reversed(list(versions.values()))],
            "events": events}


def _scalars(d: dict[str, Any]) -> dict[str, float]:
    return {k: x for k, x in d.items() if isinstance(x, (int, float)) and not isinstance(x, bool) and k != "n"}


def _gate(data: dict[str, Any]) -> dict[str, Any]:
    sets = []
    for s in data.get("sets") or []:
        broken = s.get("broken") or []
        sets.append({"eval_set": s.get("eval_set"), "n": s.get("n"), "incumbent": s.get("incumbent"),
                     "candidate": s.get("candidate"), "ci": (s.get("ci_low"), s.get("ci_high")),
                     "fixed": s.get("fixed"), "n_broken": len(broken), "passed": s.get("passed"),
                     "notes": s.get("notes") or [], "broken": broken[:BROKEN_SHOWN]})
    return {"passed": data.get("passed"), "metric": data.get("metric"), "epsilon": data.get("epsilon"),
            "notes": data.get("notes") or [], "reasons": data.get("reasons") or [], "sets": sets}


@dataclass(frozen=True)
class TraceFilter:
    """What the trace table is narrowed to (empty: everything)."""

    verdict: str = ""  # a triage verdict, or "unjudged"
    kind: str = ""
    source: str = ""
    version: str = ""
    q: str = ""  # text in the input or the triage reason
    page: int = 0

    def where(self, stmt: Any) -> Any:
        if self.verdict == "unjudged":
            stmt = stmt.where(TraceRow.triage.is_(None))
        elif self.verdict:
            stmt = stmt.where(TraceRow.triage == self.verdict)
        if self.kind:
            stmt = stmt.where(TraceRow.kind == self.kind)
        if self.source:
            stmt = stmt.where(TraceRow.feedback_source == self.source)
        if self.version:
            stmt = stmt.where(TraceRow.model_version == self.version)
        if self.q:
            stmt = stmt.where(or_(*(c.icontains(self.q, autoescape=True)  # "100%" and "a_b" are text, not patterns
                                    for c in (TraceRow.input, TraceRow.reason, TraceRow.feedback_label))))
        return stmt


def trace_table(ws: Workspace, f: TraceFilter) -> dict[str, Any]:
    """One page of traces (newest first) that match ``f``, and how many match in all."""
    with ws.store.session() as s:
        total = s.scalar(f.where(select(func.count()).select_from(TraceRow))) or 0
        rows = s.scalars(f.where(select(TraceRow)).order_by(TraceRow.ts.desc(), TraceRow.id)
                         .offset(max(f.page, 0) * PAGE).limit(PAGE)).all()
        out = [{"id": r.id, "ts": r.ts, "version": r.model_version, "input": r.input,
                "pred": _shown_output(r.output), "feedback": _shown_feedback(r),
                "source": r.feedback_source, "verdict": r.triage or "unjudged", "kind": r.kind, "reason": r.reason}
               for r in rows]
    return {"rows": out, "total": total, "page": f.page, "pages": max(1, -(-total // PAGE))}


def _shown_output(output: Any) -> str | None:
    """A trace's answer in a table cell: the label, the entities (type: text), or the completion."""
    if not isinstance(output, dict):
        return None if output is None else str(output)
    if output.get("label") is not None:
        return str(output["label"])
    if isinstance(output.get("entities"), list):
        return "; ".join(f"{e.get('label', '?')}: {e.get('text', '')}" if isinstance(e, dict) else str(e)
                         for e in output["entities"]) or "(no entities)"
    return None if output.get("output") is None else str(output["output"])


def _shown_feedback(r: TraceRow) -> str | None:
    if r.feedback_label is not None:
        return r.feedback_label
    if r.feedback_spans is not None:
        return f"{len(r.feedback_spans)} entities" if r.feedback_spans else "(no entities)"
    return r.feedback_verdict


def _buckets(times: list[dt.datetime]) -> tuple[dt.datetime, dt.timedelta, int]:
    """Start, width and count of the time buckets of a chart: ``BUCKETS`` at most, a minute wide at least."""
    lo, hi = min(times), max(times)
    width = max((hi - lo) / BUCKETS, dt.timedelta(minutes=1))
    return lo, width, min(BUCKETS, int((hi - lo) / width) + 1)


def _epoch(dialect: str) -> Any:
    """SQL: a trace's time as whole seconds since 1970 (integer, so ``//`` is integer division everywhere)."""
    if dialect == "postgresql":
        return cast(func.extract("epoch", TraceRow.ts), BigInteger)
    return cast(func.strftime("%s", TraceRow.ts), BigInteger)


def _volume(s: Any, dialect: str) -> tuple[dict[str, Any], Counter, int]:
    """Traces, feedback and verdicts per time bucket, aggregated by the database (a page stays quick on
    millions of traces); also the verdict totals and the feedback total."""
    lo, hi = s.execute(select(func.min(TraceRow.ts), func.max(TraceRow.ts))).one()
    if lo is None:
        return {"buckets": []}, Counter(), 0
    span = int((hi - lo).total_seconds())
    step = max(60, -(-span // BUCKETS))  # whole seconds, wide enough that BUCKETS cover the span
    n = span // step + 1
    lo_s = int(lo.replace(tzinfo=dt.timezone.utc).timestamp()) if lo.tzinfo is None else int(lo.timestamp())
    bucket = (_epoch(dialect) - lo_s) // step
    fb = func.sum(case((has_feedback(), 1), else_=0))
    counts: dict[int, Counter] = defaultdict(Counter)
    verdicts: Counter = Counter()
    feedback = 0
    stmt = select(bucket, TraceRow.triage, func.count(), fb).group_by(bucket, TraceRow.triage)
    for b, triage, k, f in s.execute(stmt):
        c = counts[min(max(int(b or 0), 0), n - 1)]
        c["traces"] += int(k)
        c["feedback"] += int(f or 0)
        c[triage or "unjudged"] += int(k)
        verdicts[triage or "unjudged"] += int(k)
        feedback += int(f or 0)
    return ({"start": lo, "width_s": float(step), "buckets": [dict(counts.get(i, Counter())) for i in range(n)]},
            verdicts, feedback)


def traffic_overview(ws: Workspace) -> dict[str, Any]:
    """Trace volume, feedback and triage verdicts over time, latency, drift, the poison quarantine, the
    malformed lines set aside at import, the latest failure taxonomy, and the filter choices."""
    store = ws.store
    with store.session() as s:
        volume, verdicts, with_feedback = _volume(s, store.engine.dialect.name)
        lat = s.execute(select(TraceRow.ts, TraceRow.meta).where(TraceRow.origin == "serve")
                        .order_by(TraceRow.ts.desc()).limit(LATENCY_SAMPLE)).all()
        poison = s.scalars(select(TraceRow).where(TraceRow.triage == "poison").order_by(TraceRow.ts.desc())
                           .limit(POISON_SHOWN)).all()
        poison = [{"id": r.id, "ts": r.ts, "input": r.input, "feedback": _shown_feedback(r) or "",
                   "source": r.feedback_source or "", "kind": r.kind or "", "reason": r.reason or ""} for r in poison]
        kinds = {k or "unknown": n for k, n in s.execute(select(TraceRow.kind, func.count())
                                                         .where(TraceRow.triage == "poison").group_by(TraceRow.kind))}
        choices = {"verdict": sorted(verdicts),
                   "kind": sorted(k for (k,) in s.execute(select(TraceRow.kind).distinct()) if k),
                   "version": sorted(v for (v,) in s.execute(select(TraceRow.model_version).distinct()) if v),
                   "source": sorted(v for (v,) in s.execute(select(TraceRow.feedback_source).distinct()
                                                             .limit(500)) if v)}
        malformed = s.scalars(select(Quarantine).where(Quarantine.source.like("traces:%"))
                              .order_by(Quarantine.id.desc()).limit(POISON_SHOWN)).all()
        malformed = [{"file": q.source.removeprefix("traces:"), "line": q.line_no, "reason": q.reason, "raw": q.raw}
                     for q in malformed]
    latency: dict[str, Any] = {"buckets": []}
    samples = [(ts, float(m["latency_ms"])) for ts, m in lat if isinstance(m, dict)
               and isinstance(m.get("latency_ms"), (int, float))]
    if samples:
        lo, width, n = _buckets([t for t, _ in samples])
        by: dict[int, list[float]] = defaultdict(list)
        for ts, ms in samples:
            by[min(int((ts - lo) / width), n - 1)].append(ms)
        latency = {"start": lo, "width_s": width.total_seconds(), "n": len(samples),
                   "buckets": [_percentiles(by.get(i, [])) for i in range(n)]}
    judged = sum(n for v, n in verdicts.items() if v != "unjudged")
    return {"total": sum(verdicts.values()), "with_feedback": with_feedback, "verdicts": dict(verdicts),
            "drift_share": verdicts.get("out_of_scope", 0) / judged if judged else None,
            "volume": volume, "latency": latency, "poison": poison, "poison_by_kind": kinds,
            "malformed": malformed, "taxonomy": _taxonomy(ws), "choices": choices}


def _percentiles(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    xs = sorted(xs)
    return {"p50": xs[len(xs) // 2], "p95": xs[min(len(xs) - 1, int(0.95 * len(xs)))], "n": len(xs)}


def _taxonomy(ws: Workspace) -> dict[str, Any]:
    """The newest improve cycle's failure clusters (name, size, class pairs, example traces)."""
    rows = ws.store.all(select(Decision).where(Decision.kind == "taxonomy").order_by(Decision.id.desc()).limit(1))
    if not rows:
        return {"run_id": None, "clusters": []}
    return {"run_id": rows[0].run_id, "clusters": (rows[0].data or {}).get("clusters") or []}


def task_overview(ws: Workspace) -> list[dict[str, Any]]:
    """Each task, newest first: its spec, the frozen eval sets (size, content hash, class balance, the runs
    that used it) and where its data came from."""
    store = ws.store
    out = []
    for task in reversed(store.all(select(Task).order_by(Task.id))):
        runs = store.runs(task.id)
        used: dict[str, list[int]] = defaultdict(list)
        for r in runs:
            if r.eval_set_id:
                used[r.eval_set_id].append(r.id)
        sets = store.all(select(EvalSetRow).where(EvalSetRow.task_id == task.id).order_by(EvalSetRow.created_at))
        data = store.all(select(Dataset).where(Dataset.task_id == task.id).order_by(Dataset.created_at))
        out.append({"id": task.id, "name": task.name, "prompt": task.prompt, "family": task.family,
                    "created_at": task.created_at, "spec": task.spec,
                    "eval_sets": [{"id": e.id, "n": e.n, "created_at": e.created_at, "artifact": e.artifact,
                                   "balance": _balance(e.report), "runs": used.get(e.id, [])} for e in sets],
                    "datasets": [{"id": d.id, "role": d.role, "source": d.source, "n": d.n,
                                  "created_at": d.created_at} for d in data]})
    return out


def _balance(report: Any) -> list[tuple[str, int]]:
    """(class, count) pairs, largest first, from an eval set's class-balance report (whatever its shape)."""
    counts = report.get("counts") if isinstance(report, dict) else None
    if not isinstance(counts, dict):
        return []
    pairs = [(str(k), int(v)) for k, v in counts.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return sorted(pairs, key=lambda kv: (-kv[1], kv[0]))
