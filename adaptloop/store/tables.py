"""The SQLAlchemy tables: tasks, runs, nodes, findings, eval sets, datasets, the registry, traces and
their feedback, quarantine and removals. ``store.db.Store`` reads and writes them.

Every timestamp is UTC with microseconds so that the order of things (eval set before first
training node) can be checked afterwards.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Task(Base):
    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prompt: Mapped[str] = mapped_column(Text)
    family: Mapped[str] = mapped_column(String(40))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Dataset(Base):
    """A set of examples, stored as a JSONL artifact; id is the content hash."""

    __tablename__ = "datasets"
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    role: Mapped[str] = mapped_column(String(40))  # source | pool | curated | train | dev
    source: Mapped[str] = mapped_column(Text, default="")
    artifact: Mapped[str] = mapped_column(String(100))
    n: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class EvalSetRow(Base):
    __tablename__ = "eval_sets"
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    artifact: Mapped[str] = mapped_column(String(100))
    n: Mapped[int] = mapped_column(Integer)
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    kind: Mapped[str] = mapped_column(String(40), default="coldstart")
    status: Mapped[str] = mapped_column(String(40), default="running")
    budget_s: Mapped[float] = mapped_column(Float)
    spent_s: Mapped[float] = mapped_column(Float, default=0.0)
    eval_set_id: Mapped[str | None] = mapped_column(ForeignKey("eval_sets.id"), nullable=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class Node(Base):
    """One trained pipeline in the experiment graph."""

    __tablename__ = "nodes"
    __table_args__ = (Index("ix_nodes_run_id", "run_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id"), nullable=True)
    name: Mapped[str] = mapped_column(String(120))
    intervention: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str] = mapped_column(Text)
    pipeline: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(40), default="running")  # running|done|failed|interrupted
    dev_metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    eval_metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    curve: Mapped[list[Any]] = mapped_column(JSON, default=list)
    chosen: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # hparams the fit settled on
    model_artifact: Mapped[str | None] = mapped_column(String(100), nullable=True)
    predictions_artifact: Mapped[str | None] = mapped_column(String(100), nullable=True)
    train_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    # texts a second its model scores on the machine that trained it (evaluate.speed); None: not measured
    texts_per_second: Mapped[float | None] = mapped_column(Float, nullable=True)
    move: Mapped[str | None] = mapped_column(String(60), nullable=True)  # catalogue name of the intervention
    finding: Mapped[str | None] = mapped_column(String(60), nullable=True)  # kind of finding that suggested it
    proposer: Mapped[str | None] = mapped_column(String(40), nullable=True)  # doctrine | llm | improve
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class FindingRow(Base):
    """One diagnosis finding about a node's dev predictions, with its evidence."""

    __tablename__ = "findings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"))
    kind: Mapped[str] = mapped_column(String(60))
    summary: Mapped[str] = mapped_column(Text)
    severity: Mapped[float] = mapped_column(Float)
    target: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    suggests: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Outcome(Base):
    """What an intervention did, kept across runs: the doctrine learns from these."""

    __tablename__ = "outcomes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"))
    family: Mapped[str] = mapped_column(String(60))  # task family
    finding: Mapped[str | None] = mapped_column(String(60), nullable=True)
    intervention: Mapped[str] = mapped_column(String(60))
    gain: Mapped[float] = mapped_column(Float)  # dev score minus the parent's
    cost_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Removal(Base):
    """An example taken out of the training pool, with the reason."""

    __tablename__ = "removals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    example_id: Mapped[str] = mapped_column(String(40))
    text: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(60))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Quarantine(Base):
    """A malformed input record, kept with its reason."""

    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    line_no: Mapped[int] = mapped_column(Integer)
    raw: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    @validates("raw")
    def _no_nul(self, _key: str, raw: str) -> str:
        """A NUL character is kept visibly escaped: PostgreSQL text cannot hold it, and the line must not be lost."""
        return raw.replace("\x00", "\\x00")


class Decision(Base):
    """Anything the agent decided, with its reason (stop, select, promote, ...)."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_run_id", "run_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    kind: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class LLMCall(Base):
    """One request to the LLM (planner, judge, teacher): the prompt, the answer, tokens, and what it fed."""

    __tablename__ = "llm_calls"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)
    role: Mapped[str] = mapped_column(String(20))  # planner | judge | teacher
    fed: Mapped[str] = mapped_column(String(120), default="")  # the node (or trace) the answer decided
    messages: Mapped[list[Any]] = mapped_column(JSON, default=list)
    response: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(Text, default="")  # followed | rejected: why
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"))
    artifact: Mapped[str] = mapped_column(String(100))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class RegistryEvent(Base):
    """Append-only: registered, promoted (by a passed gate), refused, candidate, forced (an admin's
    promotion), rolled_back. ``data``: the gate result behind a promotion or refusal; who acted
    for a forced promotion or a rollback."""

    __tablename__ = "registry_events"
    # an alias moves by compare-and-set: each move takes the alias's next sequence number, and the unique
    # index lets only one of two concurrent moves have it (SQLite and PostgreSQL alike, no lock)
    __table_args__ = (Index("uq_registry_alias_seq", "alias", "alias_seq", unique=True),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    event: Mapped[str] = mapped_column(String(40))
    alias: Mapped[str | None] = mapped_column(String(40), nullable=True)
    alias_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class FeedbackEvent(Base):
    """Every feedback a trace received, in the order it came (append-only); the trace row holds the
    latest, which is the one that counts."""

    __tablename__ = "feedback_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str | None] = mapped_column(String(32), index=True, nullable=True)  # set by the server
    trace_id: Mapped[str] = mapped_column(String(64), index=True)
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    spans: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    verdict: Mapped[str | None] = mapped_column(String(40), nullable=True)
    source: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class TraceRow(Base):
    """One inference: what came in, what the model said, the feedback, and the triage verdict.

    ``triage`` is set by an improve cycle: ``ok`` (no failure), ``fixable`` (a failure with a
    trustworthy correction), ``poison`` (kept and shown, never trained on), ``out_of_scope``
    (drift), ``unlabelled`` (a failure signal without a correction).
    """

    __tablename__ = "traces"
    __table_args__ = (Index("ix_traces_ts", "ts"), Index("ix_traces_triage", "triage"))
    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    ts: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    task_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(40), nullable=True)
    input: Mapped[str] = mapped_column(Text)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    feedback_label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # extraction: the corrected entities [[start, end, label], ...] ([] says "none"); null without
    feedback_spans: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    feedback_verdict: Mapped[str | None] = mapped_column(String(40), nullable=True)
    feedback_source: Mapped[str | None] = mapped_column(String(200), nullable=True)
    feedback_ts: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    origin: Mapped[str] = mapped_column(String(200), default="serve")
    triage: Mapped[str | None] = mapped_column(String(40), nullable=True)
    kind: Mapped[str | None] = mapped_column(String(60), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    trust: Mapped[float | None] = mapped_column(Float, nullable=True)
    cycle_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the improve run that judged it


class TraceUse(Base):
    """A trace that went into a training set or a frozen eval set: the audit trail."""

    __tablename__ = "trace_uses"
    __table_args__ = (Index("ix_trace_uses_trace_id", "trace_id"), Index("ix_trace_uses_run_id", "run_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trace_id: Mapped[str] = mapped_column(ForeignKey("traces.id"))
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    role: Mapped[str] = mapped_column(String(40))  # train | dev | eval | dropped (a duplicate or eval overlap)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


def has_feedback() -> Any:
    """SQL: the trace carries a corrected label (or entities) or a verdict."""
    return (TraceRow.feedback_label.is_not(None) | TraceRow.feedback_verdict.is_not(None)
            | TraceRow.feedback_spans.is_not(None))
