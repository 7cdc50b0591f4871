"""The one class that reads and writes the tables (``store.tables``).

SQLite in the workspace by default; any SQLAlchemy URL (PostgreSQL) works the same. Registry
events are append-only: a rollback is a new event, never an update. Every timestamp is UTC
with microseconds so that the order of things (eval set before first training node) can be
checked afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from adaptloop.errors import NotFoundError
from adaptloop.store import migrate
from adaptloop.store.tables import (  # re-exported: the tables are imported from here across the package
    Base,
    Dataset,
    Decision,
    EvalSetRow,
    FeedbackEvent,
    FindingRow,
    LLMCall,
    ModelVersionRow,
    Node,
    Outcome,
    Quarantine,
    RegistryEvent,
    Removal,
    Run,
    Task,
    TraceRow,
    TraceUse,
    has_feedback,
    utcnow,
)
from adaptloop.types import CarriedTrace, RunState

__all__ = [
    "Base", "Dataset", "Decision", "EvalSetRow", "FeedbackEvent", "FindingRow", "LLMCall", "ModelVersionRow", "Node",
    "Outcome", "Quarantine", "RegistryEvent", "Removal", "Run", "Store", "Task", "TraceRow", "TraceUse", "utcnow"
]


class Store:
    """The database. Methods are small verbs; each commits its own transaction.

    Args:
        url: SQLAlchemy URL.
    """

    def __init__(self, url: str) -> None:
        from sqlalchemy.exc import ArgumentError

        from adaptloop.errors import WorkspaceError

        try:
            self.engine = create_engine(url, future=True)
        except ModuleNotFoundError as exc:
            raise WorkspaceError(
                f"the store URL needs the Python driver '{exc.name}'; install it (PostgreSQL: "
                "pip install 'adaptloop[postgres]')") from None
        except ArgumentError:
            raise WorkspaceError(f"store url '{url}' is not a SQLAlchemy URL; fix [store] url "
                                 "in adaptloop.toml") from None
        if url.startswith("sqlite"):
            @event.listens_for(self.engine, "connect")
            def _pragmas(conn, _record):
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()
        migrate.upgrade(self.engine)  # a fresh store gets the schema; an older one what it lacks
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._session() as s, s.begin():
            yield s

    def add(self, obj: Base) -> Any:
        with self.session() as s:
            s.add(obj)
        return obj

    def add_once(self, obj: Base) -> None:
        """Insert ``obj`` unless a row with its primary key exists: content-addressed rows (datasets, eval
        sets) that two processes may write at the same moment; the one that loses the race finds the row."""
        from sqlalchemy import inspect
        from sqlalchemy.exc import IntegrityError

        pk = inspect(type(obj)).primary_key_from_instance(obj)
        if self.get(type(obj), pk) is not None:
            return
        try:
            self.add(obj)
        except IntegrityError:
            if self.get(type(obj), pk) is None:
                raise

    def update(self, cls: type[Base], pk: Any, **fields: Any) -> None:
        with self.session() as s:
            row = s.get(cls, pk)
            if row is None:
                raise NotFoundError(f"{cls.__tablename__} {pk} not found")
            for k, v in fields.items():
                setattr(row, k, v)

    def get(self, cls: type[Base], pk: Any) -> Any:
        with self._session() as s:
            return s.get(cls, pk)

    def all(self, stmt: Any) -> list[Any]:
        with self._session() as s:
            return list(s.scalars(stmt))

    # -- run state: written and read here only ------------------------------------------------
    def save_state(self, run_id: int, state: RunState) -> None:
        self.update(Run, run_id, state=state.to_dict())

    def run_state(self, run: Run | int) -> RunState:
        """A run's typed state (older stored versions upgraded).

        Raises:
            NotFoundError: no such run, or it never got as far as writing its state.
        """
        row = self.get(Run, run) if isinstance(run, int) else run
        if row is None or not row.state:
            raise NotFoundError(f"run {run if isinstance(run, int) else run.id} has no state: "
                                "it stopped before its data was prepared")
        return RunState.from_dict(row.state)

    # -- convenience queries -------------------------------------------------------------
    def latest_task(self) -> Task | None:
        rows = self.all(select(Task).order_by(Task.id.desc()).limit(1))
        return rows[0] if rows else None

    def nodes(self, run_id: int) -> list[Node]:
        return self.all(select(Node).where(Node.run_id == run_id).order_by(Node.id))

    def runs(self, task_id: int | None = None) -> list[Run]:
        stmt = select(Run).order_by(Run.id)
        if task_id is not None:
            stmt = stmt.where(Run.task_id == task_id)
        return self.all(stmt)

    def decide(self, run_id: int, kind: str, reason: str, **data: Any) -> None:
        self.add(Decision(run_id=run_id, kind=kind, reason=reason, data=json.loads(json.dumps(data))))

    def findings(self, run_id: int) -> list[FindingRow]:
        return self.all(select(FindingRow).where(FindingRow.run_id == run_id).order_by(FindingRow.id))

    def learned(self, family: str | None = None, *, as_of: tuple[int, int] | None = None
                ) -> dict[str, tuple[int, float, float]]:
        """Per intervention: (times tried, mean dev gain, mean seconds), over every run; ``as_of=(run, this)``:
        only what runs before ``run`` learned, and what run ``this`` has learned itself (a replay of ``run``)."""
        stmt = select(Outcome.intervention, func.count(), func.avg(Outcome.gain), func.avg(Outcome.cost_s))
        if family is not None:
            stmt = stmt.where(Outcome.family == family)
        if as_of is not None:
            stmt = stmt.where((Outcome.run_id < as_of[0]) | (Outcome.run_id == as_of[1]))
        with self._session() as s:
            rows = s.execute(stmt.group_by(Outcome.intervention)).all()
        return {r[0]: (int(r[1]), float(r[2]), float(r[3])) for r in rows}

    def decisions(self, run_id: int) -> list[Decision]:
        return self.all(select(Decision).where(Decision.run_id == run_id).order_by(Decision.id))

    # -- traces ---------------------------------------------------------------------------
    def add_traces(self, rows: list[dict[str, Any]]) -> int:
        """Insert traces, skipping ids already stored (idempotent). Returns how many were new."""
        if not rows:
            return 0
        name = self.engine.dialect.name
        if name in ("sqlite", "postgresql"):
            if name == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            with self.session() as s:
                before = s.scalar(select(func.count()).select_from(TraceRow)) or 0
                for i in range(0, len(rows), 500):
                    s.execute(insert(TraceRow.__table__).on_conflict_do_nothing(index_elements=["id"]),
                              rows[i:i + 500])
                new = (s.scalar(select(func.count()).select_from(TraceRow)) or 0) - before
            return new
        with self.session() as s:  # any other database: look the ids up first
            have = set(s.scalars(select(TraceRow.id).where(TraceRow.id.in_([r["id"] for r in rows]))))
            fresh = [r for r in rows if r["id"] not in have]
            s.execute(TraceRow.__table__.insert(), fresh) if fresh else None
        return len(fresh)

    def set_feedback(self, items: list[tuple[Any, ...]]) -> int:
        """Attach feedback ``(trace id, label, verdict, source[, entities[, event id]])`` to stored traces, in
        one transaction: each is kept as a ``FeedbackEvent`` and the trace takes the latest. An event id
        already stored is skipped (a replayed journal). A trace with new feedback is judged again.
        Returns how many ids were found."""
        found = 0
        padded = [(*item, None, None)[:6] for item in items]  # entities and event id are optional
        with self.session() as s:
            ids = [p[5] for p in padded if p[5]]
            known = set(s.scalars(select(FeedbackEvent.event_id).where(FeedbackEvent.event_id.in_(ids)))) \
                if ids else set()
            for trace_id, label, verdict, source, spans, event_id in padded:
                row = s.get(TraceRow, trace_id)
                if row is None or (event_id and event_id in known):
                    continue
                found += 1
                s.add(FeedbackEvent(event_id=event_id, trace_id=trace_id, label=label, verdict=verdict,
                                    source=source, spans=spans))
                row.feedback_label, row.feedback_verdict, row.feedback_source = label, verdict, source
                row.feedback_spans = spans
                row.feedback_ts = utcnow()
                row.triage = row.kind = row.reason = None  # new evidence: judge it again
                row.trust = row.cycle_id = None
        return found

    def trace_counts(self) -> dict[str, int]:
        """Traces by triage verdict (``unjudged`` for those no cycle has looked at)."""
        with self._session() as s:
            rows = s.execute(select(TraceRow.triage, func.count()).group_by(TraceRow.triage)).all()
        return {(t or "unjudged"): int(n) for t, n in rows}

    def trace_summary(self) -> dict[str, Any]:
        """How many traces, with feedback, by triage verdict, poison by kind, malformed lines quarantined."""
        with self._session() as s:
            total = s.scalar(select(func.count()).select_from(TraceRow)) or 0
            with_fb = s.scalar(select(func.count()).select_from(TraceRow).where(has_feedback())) or 0
            kinds = dict(s.execute(select(TraceRow.kind, func.count()).where(TraceRow.triage == "poison")
                                   .group_by(TraceRow.kind)).all())
            quarantined = s.scalar(select(func.count()).select_from(Quarantine)
                                   .where(Quarantine.source.like("traces:%"))) or 0
        return {"traces": total, "with_feedback": with_fb, "by_triage": self.trace_counts(),
                "poison_by_kind": kinds, "quarantined_lines": quarantined}

    def trace_audit(self, run_id: int | None = None, *, doubt_below: float = 0.5) -> list[dict[str, Any]]:
        """Per run and set (train, dev, eval, dropped) that traces went into: how many, and how many the
        triage doubted and why — any verdict other than ``ok`` / ``fixable`` (a leak), or a trust (the
        training data's probability of the trace's label) below ``doubt_below`` — by verdict kind."""
        stmt = (select(TraceUse.run_id, TraceUse.role, TraceRow.triage, TraceRow.kind, TraceRow.trust)
                .join(TraceRow, TraceRow.id == TraceUse.trace_id).order_by(TraceUse.run_id, TraceUse.role))
        if run_id is not None:
            stmt = stmt.where(TraceUse.run_id == run_id)
        with self._session() as s:
            rows = s.execute(stmt).all()
        sets: dict[tuple[int, str], dict[str, Any]] = {}
        for run, role, triage, kind, trust in rows:
            a = sets.setdefault((run, role), {"run_id": run, "set": role, "traces": 0, "doubted": 0,
                                              "leaked_poison": 0, "why": {}})
            a["traces"] += 1
            if triage not in ("ok", "fixable"):
                why = f"judged {triage} ({kind})"
                a["leaked_poison"] += triage == "poison"
            elif trust is not None and trust < doubt_below:
                why = f"{triage} ({kind}), label probability below {doubt_below}"
            else:
                continue
            a["doubted"] += 1
            a["why"][why] = a["why"].get(why, 0) + 1
        return list(sets.values())

    def unjudged_feedback(self) -> list[tuple[Any, ...]]:
        """(output, feedback label, verdict, feedback entities) of every trace with feedback that no
        cycle has judged."""
        with self._session() as s:
            return [tuple(r) for r in s.execute(
                select(TraceRow.output, TraceRow.feedback_label, TraceRow.feedback_verdict, TraceRow.feedback_spans)
                .where(TraceRow.triage.is_(None))
                .where(has_feedback())).all()]

    def claim_llm_calls(self, role: str, run_id: int) -> None:
        """Give ``role``'s LLM requests made before any run existed (no run id yet) to ``run_id``."""
        with self.session() as s:
            s.execute(update(LLMCall).where(LLMCall.role == role, LLMCall.run_id.is_(None)).values(run_id=run_id))

    def carried_trusted(self, task_id: int, cycle_id: int) -> list[CarriedTrace]:
        """Trusted traces (``ok`` / ``fixable``) judged by an earlier cycle that no model in production's
        line has learned from yet: never in a frozen eval set, and never in the training or dev data of
        a cycle that promoted. A cycle with too few failures, or one the gate refused, leaves its
        trusted traces to the next."""
        with self._session() as s:
            promoted = select(Decision.run_id).where(Decision.kind == "promoted")
            spent = select(TraceUse.trace_id).where((TraceUse.role == "eval") | TraceUse.run_id.in_(promoted))
            rows = s.execute(
                select(TraceRow.id, TraceRow.input, TraceRow.feedback_label, TraceRow.triage,
                       TraceRow.feedback_spans, TraceRow.feedback_source)
                .where(TraceRow.task_id == task_id, TraceRow.triage.in_(("ok", "fixable")),
                       TraceRow.cycle_id != cycle_id,
                       TraceRow.feedback_label.is_not(None) | TraceRow.feedback_spans.is_not(None),
                       TraceRow.id.not_in(spent))
                .order_by(TraceRow.ts, TraceRow.id)).all()
        return [CarriedTrace(id=r[0], text=r[1], label=r[2], triage=r[3],
                             spans=None if r[4] is None else tuple(tuple(sp) for sp in r[4]), source=r[5])
                for r in rows]

    def verdicts(self, ids: list[str]) -> dict[str, str | None]:
        """Trace id → triage verdict (None: not judged yet), for the ids that are stored."""
        with self._session() as s:
            return dict(s.execute(select(TraceRow.id, TraceRow.triage).where(TraceRow.id.in_(ids))).all())
