"""Indexes for the lookups that grow with traffic: traces by time and verdict, trace uses by trace
and run, nodes and decisions by run (the listings, the audit and the dashboard read these).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEXES = (("ix_traces_ts", "traces", ["ts"]), ("ix_traces_triage", "traces", ["triage"]),
           ("ix_trace_uses_trace_id", "trace_uses", ["trace_id"]), ("ix_trace_uses_run_id", "trace_uses", ["run_id"]),
           ("ix_nodes_run_id", "nodes", ["run_id"]), ("ix_decisions_run_id", "decisions", ["run_id"]))


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, if_not_exists=True)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table, if_exists=True)
