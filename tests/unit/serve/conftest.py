"""A workspace with a cold start, imported traffic (poison included) and one improve cycle, behind the fake
trainer: what the dashboard tests read."""

import os

import pytest

from adaptloop.agent.coldstart import cold_start
from adaptloop.agent.improve import ImproveCycle
from adaptloop.agent.traffic import import_traces
from adaptloop.data.sources import load_classification
from adaptloop.train.fake import FakeTrainer, _features
from adaptloop.workspace import Workspace, init_workspace
from tests.conftest import read_fixture, subset, write_jsonl
from tests.unit.agent.test_improve import traffic

ADMIN_TOKEN = "dashboard-test-token"
HOSTILE = "<script>window.__pwned = 1</script> my card <b>never</b> arrived"


@pytest.fixture(scope="session")
def dash_ws(request, tmp_path_factory) -> Workspace:
    """Run 1: a cold start (v1). Run 2: an improve cycle on 400 traces with feedback (20% wrong, planted
    injection and burst), one of them with markup in its text. ``[serve] admin_token`` is set. On a fresh
    PostgreSQL database in the PostgreSQL pass (session-scoped: the per-test switch comes too late for it)."""
    tmp = tmp_path_factory.mktemp("dash")
    url = (request.getfixturevalue("pg_server").fresh_database()
           if os.environ.get("ADAPTLOOP_TEST_STORE") == "postgresql" else None)
    ws = Workspace.open(init_workspace(tmp / "ws"), store=url)
    ws.settings.search.workers = 1
    ws.settings.agent.plateau_rounds = 1
    ws.settings.serve.admin_token = ADMIN_TOKEN
    sample = read_fixture("banking77_sample.jsonl")
    cold_start(ws, load_classification(write_jsonl(tmp / "seed.jsonl", subset(sample, 5, 12))),
               "route banking messages", 60, make_trainer=lambda s: FakeTrainer(), embed_fn=_features)
    rows = traffic(subset(sample, 5, 80, offset=12), wrong=0.2)
    rows.append({"id": "hostile", "ts": "2026-11-01T12:00:00", "input": HOSTILE,
                 "feedback": {"label": rows[0]["feedback"]["label"], "source": "<i>source</i>"}})
    import_traces(ws, str(write_jsonl(tmp / "traces.jsonl", rows)))
    ImproveCycle(ws, 60, make_trainer=lambda s: FakeTrainer(), embed_fn=_features).run()
    return ws
