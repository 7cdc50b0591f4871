"""The same loop on both store backends: SQLite (the default) and a real PostgreSQL server started by the
tests (tests/pg.py). A cold start, traffic with feedback, an improve cycle, and the listings, each reading
back what the other wrote."""

from __future__ import annotations

from sqlalchemy import select

from adaptloop.agent.coldstart import cold_start
from adaptloop.agent.improve import ImproveCycle
from adaptloop.agent.traffic import import_traces
from adaptloop.data.sources import load_classification
from adaptloop.store import registry
from adaptloop.store.db import Decision, TraceRow
from adaptloop.train.fake import FakeTrainer, _features
from adaptloop.workspace import Workspace
from tests.conftest import init_tiny_workspace, one_json, run, subset, write_jsonl


def test_cold_start_traffic_and_improve_on_each_backend(store_url, tmp_path, banking_sample):
    root = init_tiny_workspace(tmp_path / "ws", store_url=store_url)
    ws = Workspace.open(root)
    assert ws.store.engine.url.get_backend_name() == store_url.split(":")[0].split("+")[0]
    ws.settings.search.workers, ws.settings.agent.plateau_rounds = 1, 1
    seed = write_jsonl(tmp_path / "seed.jsonl", subset(banking_sample, 5, 12))
    first = cold_start(ws, load_classification(seed), "route banking messages", 60,
                       make_trainer=lambda s: FakeTrainer(), embed_fn=_features)
    assert first.version is not None and registry.alias_target(ws.store, "production") == first.version
    rows = subset(banking_sample, 5, 60, offset=12)
    labels = sorted({r["label"] for r in rows})
    traces = [{"id": f"t{i}", "ts": f"2026-11-01T10:{i // 60:02d}:{i % 60:02d}", "input": r["text"],
               "output": {"label": labels[(labels.index(r["label"]) + 1) % len(labels)] if i % 3 == 0
                          else r["label"]},
               "feedback": {"label": r["label"], "source": f"user{i % 5}"}} for i, r in enumerate(rows)]
    assert import_traces(ws, str(write_jsonl(tmp_path / "traces.jsonl", traces)))["new"] == len(rows)
    result = ImproveCycle(ws, 60, make_trainer=lambda s: FakeTrainer(), embed_fn=_features).run()
    assert result.decision in ("promoted", "refused"), result.reason
    assert ws.store.all(select(TraceRow).where(TraceRow.triage.is_(None))) == []
    kinds = {d.kind for d in ws.store.all(select(Decision).where(Decision.run_id == result.run_id))}
    assert {"triage", "eval_set_frozen", "curriculum"} <= kinds
    ws.store.engine.dispose()
    # a second process (the CLI) reads back what the first wrote
    runs = one_json(run("runs", "--json", "-w", root))
    assert [r["kind"] for r in runs["runs"]] == ["coldstart", "improve"]
    models = one_json(run("models", "--json", "-w", root))
    assert models["aliases"]["production"] == f"v{registry.alias_target(ws.store, 'production')}"
    assert len(models["versions"]) >= 2 and models["events"][0]["event"] == "registered"
