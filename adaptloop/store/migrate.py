"""Schema migrations: Alembic revisions in ``store/migrations``, applied when a store is opened.

A store is brought to the head revision on open, on SQLite and PostgreSQL alike, so every command
works on a store written by any earlier release. On PostgreSQL a transaction-scoped advisory lock
makes processes that open one store at once migrate it one after the other. Writing a new
revision: ``alembic -c adaptloop/store/migrations/alembic.ini revision -m "..."`` (docs/scale-out.md).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
LOCK_KEY = 7_342_001  # pg_advisory_xact_lock key: one migration at a time per database


def _config():
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@lru_cache(maxsize=1)
def head() -> str:
    """The newest revision this code knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def current(engine: Engine) -> str | None:
    """The revision the store is at (None: never migrated — empty, or written before migrations)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the store to ``head()``; nothing to do (one query) when it is there already.

    Raises:
        WorkspaceError: the store was written by a newer adaptloop (a revision this code lacks).
    """
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from adaptloop.errors import WorkspaceError

    at = current(engine)
    if at == head():
        return
    cfg = _config()
    try:
        known = at is None or ScriptDirectory.from_config(cfg).get_revision(at) is not None
    except CommandError:
        known = False
    if not known:
        raise WorkspaceError(f"the store is at schema revision {at}, which this adaptloop does not know: it was "
                             "written by a newer release; upgrade adaptloop (pip install -U adaptloop)")
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
        cfg.attributes["connection"] = conn
        try:
            command.upgrade(cfg, "head")
        except CommandError as exc:
            raise WorkspaceError(f"cannot migrate the store: {exc}") from None
