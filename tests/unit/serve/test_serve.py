"""The HTTP server on a fake production model: predict, feedback, limits, metrics, admin, hot swap."""

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from adaptloop.agent.coldstart import cold_start
from adaptloop.data.sources import load_classification
from adaptloop.serve.app import create_app
from adaptloop.store import registry
from adaptloop.store.db import TraceRow
from adaptloop.train.fake import FakeTrainer
from adaptloop.workspace import Workspace, init_workspace
from tests.conftest import subset, write_jsonl


@pytest.fixture
def served(tmp_path, banking_sample):
    ws = Workspace.open(init_workspace(tmp_path / "ws"))
    ws.settings.search.workers = 1
    ws.settings.serve.max_inputs = 8
    ws.settings.serve.max_chars = 200
    for n in (8, 10):  # two versions: v2 is production
        rows = subset(banking_sample, 4, n)
        cold_start(ws, load_classification(write_jsonl(tmp_path / f"d{n}.jsonl", rows)), "route banking", 30,
                   make_trainer=lambda s: FakeTrainer(), embed_fn=None)
    with TestClient(create_app(ws)) as client:
        yield ws, client


def stored(ws) -> int:
    with ws.store._session() as s:
        return s.scalar(select(func.count()).select_from(TraceRow))


def wait_for(cond, timeout=10.0):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "condition not met in time"
        time.sleep(0.05)


def test_predict_traces_every_input_and_takes_feedback(served):
    ws, client = served
    r = client.post("/v1/predict", json={"inputs": ["my card has not arrived", "how do I top up"],
                                         "meta": {"user": "u1"}})
    assert r.status_code == 200
    body = r.json()
    assert body["model_version"] == "v2" and len(body["outputs"]) == 2
    out = body["outputs"][0]
    assert {"trace_id", "label", "score"} <= set(out)
    label = client.app.state.slot.spec.labels[0]  # feedback must name a class of the served task
    f = client.post("/v1/feedback", json={"trace_id": out["trace_id"], "label": label, "source": "agent-1"})
    assert f.status_code == 200 and f.json()["accepted"]
    wait_for(lambda: stored(ws) == 2)
    wait_for(lambda: ws.store.get(TraceRow, out["trace_id"]).feedback_label == label)
    row = ws.store.get(TraceRow, out["trace_id"])
    assert row.model_version == "v2" and row.output["label"] == out["label"]
    assert row.meta["user"] == "u1" and row.meta["latency_ms"] >= 0  # the server adds the request's latency
    assert client.post("/v1/feedback", json={"trace_id": "nope", "label": "x"}).status_code == 404
    assert client.post("/v1/feedback", json={"trace_id": out["trace_id"]}).status_code == 422
    # feedback must fit the served task: entities are an extraction task's, not a classifier's
    second = body["outputs"][1]["trace_id"]
    bad = client.post("/v1/feedback", json={"trace_id": second, "entities": [{"start": 0, "end": 3, "label": "X"}]})
    assert bad.status_code == 422 and "classifies text" in bad.json()["detail"]
    assert ws.store.get(TraceRow, second).feedback_spans is None


def test_limits_and_malformed_bodies_never_500(served):
    _ws, client = served
    assert client.post("/v1/predict", json={"inputs": ["x"] * 9}).status_code == 413
    assert client.post("/v1/predict", json={"inputs": ["x" * 201]}).status_code == 413
    assert client.post("/v1/predict", content=b"x" * 10_000_000,
                       headers={"content-type": "application/json"}).status_code == 413
    assert client.post("/v1/predict", content=b"{not json", headers={"content-type": "application/json"}
                       ).status_code == 422
    assert client.post("/v1/predict", json={"inputs": [3, None]}).status_code == 422
    assert client.post("/v1/predict", json={}).status_code == 422
    assert client.post("/v1/feedback", json={"trace_id": "t", "verdict": "maybe"}).status_code == 422


def test_health_metrics_admin_and_hot_swap(served):
    ws, client = served
    assert client.get("/healthz").json()["model_version"] == "v2"
    client.post("/v1/predict", json={"input": "hello"})
    text = client.get("/metrics").text
    assert "adaptloop_requests_total" in text and "adaptloop_batch_size_bucket" in text
    # what tuning the batcher needs: time in the queue before a forward pass, and the pass itself
    assert "adaptloop_queue_seconds_count 1.0" in text and "adaptloop_forward_seconds_count 1.0" in text
    assert client.post("/v1/admin/rollback").status_code == 401
    auth = {"Authorization": f"Bearer {ws.settings.serve.admin_token}"}
    assert client.post("/v1/admin/promote", json={"version": "v9"}, headers=auth).status_code == 404
    r = client.post("/v1/admin/rollback", headers=auth)
    assert r.status_code == 200 and r.json()["serving"] == "v1"
    assert client.post("/v1/predict", json={"input": "hello"}).json()["model_version"] == "v1"
    # a promotion made by another process (e.g. `adaptloop improve`) is picked up by the watcher
    registry.force_promote(ws.store, 2, who="test", why="another process promoted it")
    wait_for(lambda: client.get("/healthz").json()["model_version"] == "v2")
    assert client.post("/v1/predict", json={"input": "hello"}).json()["model_version"] == "v2"


def test_the_served_version_is_reloaded_when_an_export_of_it_passes(served):
    """`adaptloop export` while serving (or after an improve cycle's promotion): the next watch tick
    loads the same version again, through its export."""
    import json

    from adaptloop.agent.export import VERDICT, export_dir
    from adaptloop.serve.app import ModelSlot

    ws, _client = served
    slot = ModelSlot(ws)
    assert slot.refresh() and slot.version_id == 2 and slot.precision is None
    assert not slot.refresh()  # nothing changed
    folder = export_dir(ws, slot.artifact)
    folder.mkdir(parents=True)
    (folder / VERDICT).write_text(json.dumps({"serves": "int8"}))  # the verdict an accepted export leaves
    assert slot.refresh() and slot.version_id == 2 and slot.precision == "int8" and slot.swaps == 1
    assert not slot.refresh()
