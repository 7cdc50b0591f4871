"""The schema as adaptloop wrote it before migrations: brings any earlier store up to it.

Before Alembic, a store was created with ``create_all`` and brought up to date on open by adding
missing columns and indexes (every change until then was additive). This revision keeps that
schema frozen here (never the live models in ``store.tables``, which move on) and, for any store:
creates the tables it lacks, adds the columns it lacks (nullable, as the additive migration did)
and the indexes. A fresh database gets the whole schema; a store written by any earlier release
gets what it missed. Later revisions are ordinary Alembic migrations on top of this one.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

META = sa.MetaData()
_T = META.tables

sa.Table('feedback_events', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=32), nullable=True),
    sa.Column('trace_id', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=True),
    sa.Column('spans', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('verdict', sa.String(length=40), nullable=True),
    sa.Column('source', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
)
sa.Index('ix_feedback_events_event_id', _T['feedback_events'].c.event_id)
sa.Index('ix_feedback_events_trace_id', _T['feedback_events'].c.trace_id)
sa.Table('quarantine', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('raw', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
)
sa.Table('tasks', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('family', sa.String(length=40), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
)
sa.Table('traces', META,
    sa.Column('id', sa.String(length=120), nullable=False),
    sa.Column('ts', sa.DateTime(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=True),
    sa.Column('model_version', sa.String(length=40), nullable=True),
    sa.Column('input', sa.Text(), nullable=False),
    sa.Column('output', sa.JSON(), nullable=True),
    sa.Column('feedback_label', sa.String(length=200), nullable=True),
    sa.Column('feedback_spans', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('feedback_verdict', sa.String(length=40), nullable=True),
    sa.Column('feedback_source', sa.String(length=200), nullable=True),
    sa.Column('feedback_ts', sa.DateTime(), nullable=True),
    sa.Column('meta', sa.JSON(), nullable=False),
    sa.Column('origin', sa.String(length=200), nullable=False),
    sa.Column('triage', sa.String(length=40), nullable=True),
    sa.Column('kind', sa.String(length=60), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('trust', sa.Float(), nullable=True),
    sa.Column('cycle_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id')
)
sa.Table('datasets', META,
    sa.Column('id', sa.String(length=80), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=40), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('artifact', sa.String(length=100), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], ),
    sa.PrimaryKeyConstraint('id')
)
sa.Table('eval_sets', META,
    sa.Column('id', sa.String(length=80), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('artifact', sa.String(length=100), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], ),
    sa.PrimaryKeyConstraint('id')
)
sa.Table('removals', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('example_id', sa.String(length=40), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.String(length=60), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], ),
    sa.PrimaryKeyConstraint('id')
)
sa.Table('runs', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=40), nullable=False),
    sa.Column('budget_s', sa.Float(), nullable=False),
    sa.Column('spent_s', sa.Float(), nullable=False),
    sa.Column('eval_set_id', sa.String(length=80), nullable=True),
    sa.Column('state', sa.JSON(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['eval_set_id'], ['eval_sets.id'], ),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], ),
    sa.PrimaryKeyConstraint('id')
)
sa.Table('decisions', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
    sa.PrimaryKeyConstraint('id')
)
sa.Table('llm_calls', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('fed', sa.String(length=120), nullable=False),
    sa.Column('messages', sa.JSON(), nullable=False),
    sa.Column('response', sa.Text(), nullable=False),
    sa.Column('outcome', sa.Text(), nullable=False),
    sa.Column('prompt_tokens', sa.Integer(), nullable=False),
    sa.Column('completion_tokens', sa.Integer(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
    sa.PrimaryKeyConstraint('id')
)
sa.Table('nodes', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('intervention', sa.String(length=120), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('pipeline', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=40), nullable=False),
    sa.Column('dev_metrics', sa.JSON(), nullable=False),
    sa.Column('eval_metrics', sa.JSON(), nullable=False),
    sa.Column('curve', sa.JSON(), nullable=False),
    sa.Column('chosen', sa.JSON(), nullable=False),
    sa.Column('model_artifact', sa.String(length=100), nullable=True),
    sa.Column('predictions_artifact', sa.String(length=100), nullable=True),
    sa.Column('train_seconds', sa.Float(), nullable=False),
    sa.Column('move', sa.String(length=60), nullable=True),
    sa.Column('finding', sa.String(length=60), nullable=True),
    sa.Column('proposer', sa.String(length=40), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['parent_id'], ['nodes.id'], ),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
    sa.PrimaryKeyConstraint('id')
)
sa.Table('trace_uses', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('trace_id', sa.String(length=120), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
    sa.ForeignKeyConstraint(['trace_id'], ['traces.id'], ),
    sa.PrimaryKeyConstraint('id')
)
sa.Table('findings', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=60), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('severity', sa.Float(), nullable=False),
    sa.Column('target', sa.JSON(), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('suggests', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], ),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
    sa.PrimaryKeyConstraint('id')
)
sa.Table('model_versions', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.Integer(), nullable=False),
    sa.Column('artifact', sa.String(length=100), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('lineage', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], ),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], ),
    sa.PrimaryKeyConstraint('id')
)
sa.Table('outcomes', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.Integer(), nullable=False),
    sa.Column('family', sa.String(length=60), nullable=False),
    sa.Column('finding', sa.String(length=60), nullable=True),
    sa.Column('intervention', sa.String(length=60), nullable=False),
    sa.Column('gain', sa.Float(), nullable=False),
    sa.Column('cost_s', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], ),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
    sa.PrimaryKeyConstraint('id')
)
sa.Table('registry_events', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('event', sa.String(length=40), nullable=False),
    sa.Column('alias', sa.String(length=40), nullable=True),
    sa.Column('alias_seq', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], ),
    sa.PrimaryKeyConstraint('id')
)
sa.Index('uq_registry_alias_seq', _T['registry_events'].c.alias, _T['registry_events'].c.alias_seq, unique=True)

def upgrade() -> None:
    conn = op.get_bind()
    insp = sa.inspect(conn)
    existing = set(insp.get_table_names())
    for table in META.sorted_tables:
        if table.name not in existing:
            table.create(conn)  # with its indexes
            continue
        have = {c["name"] for c in insp.get_columns(table.name)}
        for col in table.columns:
            if col.name not in have:  # nullable: the rows already there have no value for it
                op.add_column(table.name, sa.Column(col.name, col.type, nullable=True))
        for index in table.indexes:
            index.create(conn, checkfirst=True)


def downgrade() -> None:
    for table in reversed(META.sorted_tables):
        table.drop(op.get_bind(), checkfirst=True)
