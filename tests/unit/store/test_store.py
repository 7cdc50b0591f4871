"""The store: content-addressed artifacts, the append-only registry and its aliases, schema upgrades."""

from pathlib import Path

import pytest
from sqlalchemy import select

from adaptloop.errors import NotFoundError
from adaptloop.evaluate.gate import first_model
from adaptloop.store import registry
from adaptloop.store.artifacts import ArtifactStore, tree_sha
from adaptloop.store.db import Node, RegistryEvent, Run, Store, Task


def test_artifacts_are_content_addressed_and_atomic(tmp_path):
    a = ArtifactStore(tmp_path / "art")
    addr = a.put_json({"x": 1})
    assert a.put_json({"x": 1}) == addr and a.get_json(addr) == {"x": 1}
    d = a.staging_dir()
    (d / "w.bin").write_bytes(b"weights")
    (d / "sub").mkdir()
    (d / "sub" / "c.json").write_text("{}")
    expected = tree_sha(d)
    addr_dir = a.put_dir(d)
    assert addr_dir == expected and (a.path(addr_dir) / "sub" / "c.json").exists()
    assert not d.exists()
    leftovers = [p for p in (tmp_path / "art").rglob(".*") if p.name.startswith((".tmp", ".staging"))]
    assert leftovers == []



def test_the_same_folder_stored_by_two_writers_at_once_is_stored_once(tmp_path, monkeypatch):
    """Two trials (in two worker processes) that save the same bytes at the same moment: the second writer's
    rename meets the first's folder at the address; it drops its copy and gets the address."""
    import os

    a = ArtifactStore(tmp_path / "art")
    ours, theirs = a.staging_dir(), a.staging_dir()
    for d in (ours, theirs):
        (d / "w.bin").write_bytes(b"the same weights")
    real = os.replace

    def first_writer_wins(src, dst):  # the other writer renames between our check and our rename
        if Path(src) == ours:
            real(theirs, dst)
        return real(src, dst)

    monkeypatch.setattr(os, "replace", first_writer_wins)
    addr = a.put_dir(ours)
    assert addr == tree_sha(a.path(addr)) and (a.path(addr) / "w.bin").read_bytes() == b"the same weights"
    assert not ours.exists() and not theirs.exists()
    assert [p for p in (tmp_path / "art").rglob("*") if p.name.startswith((".tmp", ".staging"))] == []

def test_registry_is_append_only_and_resolves_aliases(store_url):
    store = Store(store_url)
    task = store.add(Task(name="t", prompt="p", family="classification", spec={}))
    run = store.add(Run(task_id=task.id, budget_s=1))
    node = store.add(Node(run_id=run.id, name="n", intervention="i", reason="r", pipeline={}))
    v1 = registry.register(store, task_id=task.id, node_id=node.id, artifact="a", metrics={},
                           lineage={}, reason="first")
    v2 = registry.register(store, task_id=task.id, node_id=node.id, artifact="b", metrics={},
                           lineage={}, reason="second")
    passed = first_model("accuracy", "e1", 10, 0.9, baseline=0.5, predicts="always 'a'")
    refused = first_model("accuracy", "e1", 10, 0.5, baseline=0.5, predicts="always 'a'")
    registry.promote(store, v1.id, passed, "r1")
    with pytest.raises(ValueError, match="did not pass its gate"):
        registry.promote(store, v2.id, refused, "r2")
    registry.refuse(store, v2.id, "no better than a constant", refused)
    registry.force_promote(store, v2.id, who="ops", why="r2")
    assert registry.resolve(store, None).id == v2.id
    assert registry.rollback(store, reason="r3", who="ops") == {"from": "v2", "to": "v1", "reason": "r3"}
    assert registry.resolve(store, "production").id == v1.id
    assert registry.resolve(store, "v2").id == v2.id
    events = store.all(select(RegistryEvent).order_by(RegistryEvent.id))
    assert [e.event for e in events] == ["registered", "registered", "promoted", "refused", "forced",
                                         "rolled_back"]
    assert events[2].data["passed"] and events[2].data["notes"][0].startswith("first model: accuracy 0.9000")
    assert events[3].data["reasons"] == ["no better than predicting always 'a': accuracy 0.5000 <= 0.5000"]
    assert events[4].data == {"who": "ops"} and events[5].data == {"who": "ops", "from": 2}
    with pytest.raises(NotFoundError):
        registry.resolve(store, "v9")
    with pytest.raises(NotFoundError):
        registry.resolve(store, "staging")


def test_older_store_gets_new_columns(store_url):
    """A store written before migrations (no alembic_version), by a release that lacked a column."""
    from sqlalchemy import inspect, text

    url = store_url
    store = Store(url)
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE nodes DROP COLUMN chosen"))
        conn.execute(text("DROP TABLE alembic_version"))
    store.engine.dispose()
    again = Store(url)
    assert "chosen" in {c["name"] for c in inspect(again.engine).get_columns("nodes")}
