"""Alembic's environment for the store: runs on the connection ``store.migrate`` hands it (online
only; the store decides when to migrate, on open). ``alembic`` on the command line works too, with
``-x url=<store URL>`` (see docs/scale-out.md)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from adaptloop.store.tables import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # the alembic CLI: the store URL from -x url=...
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    with create_engine(url).begin() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
        context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    context.run_migrations()
