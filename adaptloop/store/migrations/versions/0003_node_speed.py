"""A node's measured speed: texts a second its model scores on the machine that trained it, so the
report can set accuracy against throughput for every candidate.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a store written before migrations is brought up from 0001 again: the column may be there already
    if "texts_per_second" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("nodes")}:
        return
    with op.batch_alter_table("nodes") as batch:  # SQLite alters a table by copying it
        batch.add_column(sa.Column("texts_per_second", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("texts_per_second")
