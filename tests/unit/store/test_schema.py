"""Schema migrations (Alembic, store/migrations) on both backends: a store written by the release before
migrations (tests/fixtures/release_store, made by build.py there with commit 0bd5b5b) is upgraded on open,
keeps everything, lists and improves; a fresh store migrates to exactly the models' schema."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from adaptloop.agent.improve import ImproveCycle
from adaptloop.agent.traffic import import_traces
from adaptloop.store import migrate, registry
from adaptloop.store.db import Store
from adaptloop.store.tables import Base
from adaptloop.train.fake import FakeTrainer, _features
from adaptloop.workspace import Workspace
from tests.conftest import one_json, run

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
RELEASE = FIXTURES / "release_store"


def _release_workspace(store_url: str, tmp_path: Path) -> Path:
    """The release's workspace, its store restored on the backend of ``store_url``."""
    backend = "sqlite" if store_url.startswith("sqlite") else "postgresql"
    root = tmp_path / "ws"
    shutil.copytree(RELEASE / backend / "workspace", root)
    if backend == "postgresql":
        import psycopg

        dsn = store_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute((RELEASE / "postgresql" / "store.sql").read_text())
        cfg = root / "adaptloop.toml"
        lines = cfg.read_text().splitlines()
        lines[1] = f'url = "{store_url}"'  # [store] url, the first setting
        cfg.write_text("\n".join(lines) + "\n")
    return root


def _store_url(root: Path) -> str:
    from adaptloop.config import load_settings, store_url

    return store_url(root, load_settings(root))


def test_a_store_written_by_the_release_upgrades_on_open_and_improves(store_url, tmp_path):
    root = _release_workspace(store_url, tmp_path)
    engine = create_engine(_store_url(root))
    before = set(inspect(engine).get_table_names())
    assert "runs" in before and "alembic_version" not in before  # written before migrations
    engine.dispose()
    ws = Workspace.open(root)
    assert migrate.current(ws.store.engine) == migrate.head()
    indexes = {i["name"] for i in inspect(ws.store.engine).get_indexes("traces")}
    assert {"ix_traces_ts", "ix_traces_triage"} <= indexes  # added by a revision after the release
    # everything the release wrote is there, and reads through the CLI
    runs = one_json(run("runs", "--json", "-w", root))["runs"]
    assert [r["kind"] for r in runs] == ["coldstart", "improve"]
    events = [e.event for e in registry.events(ws.store)]
    assert events[:2] == ["registered", "promoted"] and len(events) >= 3
    production = registry.alias_target(ws.store, "production")
    assert one_json(run("models", "--json", "-w", root))["aliases"]["production"] == f"v{production}"
    # a new cycle on new traffic
    rows = [json.loads(x) for x in (FIXTURES / "old_store" / "banking5.jsonl").read_text().splitlines()]
    traffic = [r for r in rows if r["role"] == "traffic"]
    random.Random(2).shuffle(traffic)
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(json.dumps({"id": f"new{i}", "input": r["text"] + " thanks",
                                        "feedback": {"label": r["label"], "source": f"u{i % 4}"}}) + "\n"
                            for i, r in enumerate(traffic)))
    assert import_traces(ws, str(path))["new"] == len(traffic)
    ws.settings.improve.min_failures = 5
    result = ImproveCycle(ws, 30, make_trainer=lambda s: FakeTrainer(), embed_fn=_features).run()
    assert result.candidate is not None and result.decision in ("promoted", "refused"), result.reason
    assert registry.events(ws.store)[-1].event == result.decision


def test_a_fresh_store_migrates_to_exactly_the_models(store_url):
    store = Store(store_url)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    again = Store(store_url)  # opening a store at head changes nothing
    assert migrate.current(again.engine) == migrate.head()


def test_a_store_from_a_newer_release_is_refused_with_one_line(tmp_path):
    import pytest
    from sqlalchemy import text

    from adaptloop.errors import WorkspaceError

    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(url)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(WorkspaceError, match="newer release"):
        Store(url)
