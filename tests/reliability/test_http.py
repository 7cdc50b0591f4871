"""Bad requests to `adaptloop serve`: each gets the status it must, one line naming the problem and
the fix, and nothing half-written (traces and feedback stored only when the request was good)."""

import json
import os
import stat
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from adaptloop.agent.coldstart import cold_start
from adaptloop.data.sources import load_classification
from adaptloop.serve.app import create_app
from adaptloop.store import registry
from adaptloop.store.db import FeedbackEvent, RegistryEvent, TraceRow
from adaptloop.train.fake import FakeTrainer
from adaptloop.workspace import Workspace, init_workspace
from tests.conftest import subset, write_jsonl


@pytest.fixture
def served(tmp_path, banking_sample):
    ws = Workspace.open(init_workspace(tmp_path / "ws"))
    ws.settings.search.workers = 1
    ws.settings.serve.max_inputs = 8
    ws.settings.serve.max_chars = 200
    rows = subset(banking_sample, 4, 10)
    cold_start(ws, load_classification(write_jsonl(tmp_path / "d.jsonl", rows)), "route banking", 30,
               make_trainer=lambda s: FakeTrainer(), embed_fn=None)
    with TestClient(create_app(ws), raise_server_exceptions=False) as client:
        yield ws, client


def count(ws, table) -> int:
    with ws.store._session() as s:
        return s.scalar(select(func.count()).select_from(table))


def settle(ws, n: int, table=TraceRow, timeout: float = 10.0) -> None:
    t0 = time.monotonic()
    while count(ws, table) != n:
        assert time.monotonic() - t0 < timeout, f"{table.__tablename__}: {count(ws, table)} rows, expected {n}"
        time.sleep(0.05)


def error_line(r) -> str:
    body = r.json()
    text = body.get("error") or body.get("detail")
    assert isinstance(text, str) and "\n" not in text and "Traceback" not in text
    return text


def one_trace(client) -> str:
    return client.post("/v1/predict", json={"input": "my card has not arrived"}).json()["outputs"][0]["trace_id"]


def test_curl_form_content_type_is_read_as_json(served):
    ws, client = served
    r = client.post("/v1/predict", content=json.dumps({"inputs": ["where is my card"]}),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json()["outputs"][0]["label"]
    bad = client.post("/v1/predict", content="inputs=where+is+my+card",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert bad.status_code == 422 and "JSON" in error_line(bad)
    settle(ws, 1)


@pytest.mark.parametrize(("body", "problem"), [
    ('{"inputs": ["\\ud800"]}', "not valid Unicode"), ('{"input": "card \\udc00 lost"}', "not valid Unicode"),
    ('{"inputs": ["ok"], "meta": {"u": "\\ud83d"}}', "not valid Unicode"),
    ('{"inputs": ["card \\u0000 lost"]}', "NUL character"),
    ('{"inputs": ["ok"], "meta": {"\\u0000": 1}}', "NUL character")])
def test_unstorable_text_gets_422_not_503(served, body, problem):
    """Lone surrogates cannot be encoded; a NUL cannot be stored on PostgreSQL: either way a 422, nothing stored."""
    ws, client = served
    r = client.post("/v1/predict", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and problem in error_line(r)
    time.sleep(0.3)
    assert count(ws, TraceRow) == 0


def test_chunked_oversized_body_is_refused_and_nothing_stored(served):
    ws, client = served
    trace = one_trace(client)
    settle(ws, 1)

    def chunks():
        yield b'{"trace_id": "' + trace.encode() + b'", "label": "'
        for _ in range(80):
            yield b"x" * 65536
        yield b'"}'

    r = client.post("/v1/feedback", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "limit" in error_line(r)
    big = client.post("/v1/feedback", json={"trace_id": trace, "label": "x" * 100_000})  # with Content-Length
    assert big.status_code == 413
    time.sleep(0.3)
    assert ws.store.get(TraceRow, trace).feedback_label is None and count(ws, FeedbackEvent) == 0


@pytest.mark.parametrize("feedback, words", [
    ({"label": "not_a_class"}, "not a class of this task"),
    ({"trace_id": "t" * 500, "label": "x"}, "trace_id"),
    ({"entities": [{"start": 0, "end": 2, "label": "x"}]}, "classifies text"),
    ({"label": "x" * 1000}, "label"),
    ({"source": "s" * 5000, "verdict": "wrong"}, "source"),
    ({"verdict": "maybe"}, "verdict"),
    ({}, "needs a 'label'"),
])
def test_feedback_is_validated_against_the_task(served, feedback, words):
    ws, client = served
    trace = one_trace(client)
    settle(ws, 1)
    r = client.post("/v1/feedback", json={"trace_id": trace, **feedback} if feedback else {"trace_id": trace})
    assert r.status_code == 422 and words in error_line(r)
    time.sleep(0.3)
    assert count(ws, FeedbackEvent) == 0 and ws.store.get(TraceRow, trace).feedback_label is None


def test_every_feedback_is_kept_and_the_latest_counts(served):
    ws, client = served
    trace = one_trace(client)
    first, second = served_labels(client)[:2]
    for label in (first, second):
        assert client.post("/v1/feedback", json={"trace_id": trace, "label": label, "source": "u1"}).status_code == 200
    settle(ws, 2, FeedbackEvent)
    with ws.store._session() as s:
        events = s.scalars(select(FeedbackEvent).where(FeedbackEvent.trace_id == trace)
                           .order_by(FeedbackEvent.id)).all()
    assert [e.label for e in events] == [first, second]
    assert ws.store.get(TraceRow, trace).feedback_label == second


def served_labels(client) -> list[str]:
    return list(client.app.state.slot.spec.labels)


def test_admin_needs_the_bearer_scheme_and_rollback_needs_an_earlier_version(served):
    ws, client = served
    token = ws.settings.serve.admin_token
    assert client.post("/v1/admin/rollback", headers={"Authorization": token}).status_code == 401
    assert client.post("/v1/admin/rollback", headers={"Authorization": f"Basic {token}"}).status_code == 401
    before = count(ws, RegistryEvent)
    # promoting the version already in production changes nothing a rollback could undo
    assert client.post("/v1/admin/promote", json={"version": "v1"},
                       headers={"Authorization": f"Bearer {token}"}).status_code == 200
    r = client.post("/v1/admin/rollback", headers={"Authorization": f"bearer {token}"})
    assert r.status_code == 409 and "no earlier version" in error_line(r)
    assert count(ws, RegistryEvent) == before + 1  # the promotion only; no rolled_back v1 -> v1
    assert registry.alias_target(ws.store, "production") == 1


def test_metrics_do_not_grow_a_series_per_unknown_url(served):
    _ws, client = served
    for i in range(20):
        assert client.get(f"/no/such/path/{i}").status_code == 404
    text = client.get("/metrics").text
    assert "/no/such/path" not in text and 'endpoint="(other)",status="404"' in text


def test_a_model_failure_is_503_without_internals_and_logged(served, caplog):
    ws, client = served

    class Broken:
        labels = ("a",)

        def predict_proba(self, texts):
            raise RuntimeError("secret internal detail /home/user/.adaptloop")

    client.app.state.slot.model = Broken()  # the served model starts failing
    with caplog.at_level("ERROR"):
        r = client.post("/v1/predict", json={"input": "hello"})
    assert r.status_code == 503 and "secret" not in r.text and "ref " in error_line(r)
    assert any("503 on POST /v1/predict" in rec.getMessage() for rec in caplog.records)
    assert count(ws, TraceRow) == 0
    assert 'adaptloop_requests_total{endpoint="/v1/predict",status="503"} 1.0' in client.get("/metrics").text


def test_settings_file_is_private(tmp_path):
    root = init_workspace(tmp_path / "w")
    mode = stat.S_IMODE(os.stat(root / "adaptloop.toml").st_mode)
    assert mode == 0o600


@pytest.mark.parametrize("method, path, body, status, words", [
    ("post", "/v1/predict", {"inputs": []}, 422, "send {"),
    ("post", "/v1/predict", {}, 422, "send {"),
    ("post", "/v1/predict", {"inputs": ["  "]}, 422, "non-empty text"),
    ("post", "/v1/predict", {"inputs": ["x"] * 9}, 413, "at most 8"),
    ("post", "/v1/predict", {"input": "y" * 201}, 413, "at most 200"),
    ("post", "/v1/predict", {"inputs": [5]}, 422, "inputs"),
    ("post", "/v1/predict", {"inputs": "one text"}, 422, "inputs"),
    ("post", "/v1/feedback", {"label": "x"}, 422, "trace_id"),
    ("post", "/v1/feedback", {"trace_id": "nope", "verdict": "wrong"}, 404, "no trace nope"),
    ("get", "/v1/predict", None, 405, ""),
    ("post", "/v1/admin/promote", {"version": "v1"}, 401, "Bearer"),
])
def test_malformed_requests_get_their_status_and_one_line(served, method, path, body, status, words):
    ws, client = served
    r = client.post(path, json=body) if method == "post" else client.get(path)
    assert r.status_code == status
    if words:
        assert words in error_line(r)
    time.sleep(0.2)
    assert count(ws, TraceRow) == 0 and count(ws, FeedbackEvent) == 0
