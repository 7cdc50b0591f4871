"""`adaptloop disk`: a workspace's parts on disk, and what --prune and --caches remove and keep.

The store rows and artifact folders are written directly (no training): what matters is which models
a version or a resumable run still needs."""

import os
import time
from pathlib import Path

from sqlalchemy import select

from adaptloop.agent.disk import disk_report
from adaptloop.config import STATE_DIR
from adaptloop.store import registry
from adaptloop.store.db import Decision, Node, Run, Task
from adaptloop.workspace import Workspace
from tests.conftest import one_json, run


def _model(ws: Workspace, tag: str, size: int = 1000) -> str:
    folder = ws.artifacts.staging_dir()
    (folder / "weights.bin").write_bytes(tag.encode() * size)
    (folder / "adaptloop_model.json").write_text('{"kind": "test"}')
    return ws.artifacts.put_dir(folder)


def _workspace(tmp_path: Path) -> tuple[Workspace, dict]:
    """A finished run of three nodes (one registered as v1), an interrupted run of one node, data, an export
    of v1 and one of a node, both caches and a staging folder left by an interrupted write."""
    assert run("init", tmp_path / "ws").exit_code == 0
    ws = Workspace.open(tmp_path / "ws")
    s = ws.store
    task = s.add(Task(name="t", prompt="p", family="classification", spec={}))
    done = s.add(Run(task_id=task.id, budget_s=60, status="done"))
    paused = s.add(Run(task_id=task.id, budget_s=60, status="interrupted"))
    a = {k: _model(ws, k) for k in ("winner", "loser", "other", "resumable")}
    nodes = {k: s.add(Node(run_id=(paused if k == "resumable" else done).id, name=k, intervention="i", reason="r",
                           pipeline={}, status="done", model_artifact=a[k])) for k in a}
    registry.register(s, task_id=task.id, node_id=nodes["winner"].id, artifact=a["winner"], metrics={}, lineage={},
                      reason="best")
    data = ws.artifacts.put_jsonl([{"text": "hi", "label": "x"}])
    state = ws.root / STATE_DIR
    for name in (a["winner"], a["loser"]):
        (state / "exports" / name).mkdir(parents=True)
        (state / "exports" / name / "model.onnx").write_bytes(b"o" * 500)
    for cache in ("embeddings", "token-features"):
        (state / "cache" / cache / "enc").mkdir(parents=True)
        (state / "cache" / cache / "enc" / "shard.npy").write_bytes(b"f" * 2000)
    (ws.artifacts.root / ".staging-dead").mkdir()
    (ws.artifacts.root / ".staging-dead" / "half.bin").write_bytes(b"h" * 300)
    os.utime(ws.artifacts.root / ".staging-dead", (time.time() - 7200, time.time() - 7200))
    (state / "exports" / (a["winner"] + ".tmp")).mkdir()  # an export being written now
    return ws, {"artifacts": a, "nodes": nodes, "data": data, "done": done}


def _parts(report: dict) -> dict:
    return {p["part"]: p for p in report["parts"]}


def test_a_survey_sorts_every_file_into_a_part_and_removes_nothing(tmp_path):
    ws, w = _workspace(tmp_path)
    r = disk_report(ws)
    p = _parts(r)
    assert p["models of model versions"]["count"] == 1
    assert p["node models of runs that may resume"]["count"] == 1
    assert p["node models no model version uses"]["count"] == 2
    assert p["node models no model version uses"]["removable_with"] == "--prune"
    assert p["data, eval sets, predictions and other records"]["count"] == 1
    assert p["ONNX exports of kept models"]["count"] == 1 and p["ONNX exports of removed models"]["count"] == 1
    assert p["leftovers of interrupted writes"]["bytes"] == 300
    assert p["writes in progress (under an hour old)"]["removable_with"] is None
    assert p["embedding cache"]["bytes"] == 2000 and p["token-feature store"]["removable_with"] == "--caches"
    assert (p["the store (SQLite)"]["count"] >= 1) == (ws.store.engine.dialect.name == "sqlite")  # else PostgreSQL
    on_disk = sum(f.stat().st_size for f in (ws.root / STATE_DIR).rglob("*") if f.is_file())
    assert r["total_bytes"] == on_disk  # each file counted once, none missed
    assert r["removable_bytes"]["--caches"] == 4000 and r["removed"] == {}
    assert all(ws.artifacts.exists(x) for x in w["artifacts"].values())


def test_prune_removes_unused_node_models_and_keeps_versions_resumable_runs_and_data(tmp_path):
    ws, w = _workspace(tmp_path)
    a = w["artifacts"]
    r = disk_report(ws, prune=True)
    assert r["removed"]["node models no model version uses"]["count"] == 2
    assert not ws.artifacts.exists(a["loser"]) and not ws.artifacts.exists(a["other"])
    assert ws.artifacts.exists(a["winner"]) and ws.artifacts.exists(a["resumable"]) and ws.artifacts.exists(w["data"])
    assert (ws.root / STATE_DIR / "exports" / a["winner"]).exists()
    assert not (ws.root / STATE_DIR / "exports" / a["loser"]).exists()
    assert not (ws.artifacts.root / ".staging-dead").exists()
    assert (ws.root / STATE_DIR / "exports" / (a["winner"] + ".tmp")).exists()
    assert (ws.root / STATE_DIR / "cache" / "embeddings").exists()  # caches only with --caches
    assert r["removable_bytes"]["--prune"] == 0
    decisions = ws.store.all(select(Decision).where(Decision.kind == "prune"))
    assert len(decisions) == 1 and decisions[0].run_id == w["done"].id
    assert sorted(decisions[0].data["nodes"]) == sorted([w["nodes"]["loser"].id, w["nodes"]["other"].id])
    assert disk_report(ws, prune=True)["removed"] == {}  # nothing left to prune


def test_caches_are_cleared_but_not_under_a_running_run(tmp_path):
    ws, w = _workspace(tmp_path)
    ws.store.update(Run, w["done"].id, status="running")
    r = run("disk", "--caches", "-w", ws.root)
    assert r.exit_code == 2 and "is running" in r.stderr and "--resume --budget 0s" in r.stderr
    assert "Traceback" not in r.stderr
    disk_report(ws, prune=True)  # a running run's nodes are kept
    assert ws.artifacts.exists(w["artifacts"]["loser"])
    ws.store.update(Run, w["done"].id, status="done")
    out = one_json(run("disk", "--caches", "--json", "-w", ws.root))
    assert out["removed"] == {"embedding cache": {"count": 1, "bytes": 2000},
                              "token-feature store": {"count": 1, "bytes": 2000}}
    assert not (ws.root / STATE_DIR / "cache" / "token-features").exists()
    shown = run("disk", "-w", ws.root)
    assert shown.exit_code == 0 and "node models no model version uses" in shown.stdout
    assert "adaptloop disk --prune" in shown.stdout
