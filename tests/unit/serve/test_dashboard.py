"""The dashboard's pages over HTTP (no browser): every part is there, untrusted text is escaped, the trace
table filters and pages on the server, the admin buttons' endpoints need the token, `serve` and `ui` both
serve it. The browser tests are test_dashboard_browser.py."""

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from adaptloop.agent.coldstart import cold_start
from adaptloop.data.sources import load_classification
from adaptloop.report import dashboard as data
from adaptloop.serve.app import create_app, create_ui_app
from adaptloop.store import registry
from adaptloop.store.db import TraceRow
from adaptloop.train.fake import FakeTrainer
from adaptloop.workspace import Workspace, init_workspace
from tests.conftest import run, subset, write_jsonl
from tests.unit.serve.conftest import ADMIN_TOKEN, HOSTILE


@pytest.fixture(scope="module")
def client(dash_ws):
    with TestClient(create_ui_app(dash_ws)) as c:
        yield c


def count(ws, **where) -> int:
    stmt = select(func.count()).select_from(TraceRow)
    for k, v in where.items():
        stmt = stmt.where(getattr(TraceRow, k) == v)
    with ws.store.session() as s:
        return s.scalar(stmt)


def test_every_page_shows_its_parts(dash_ws, client):
    runs = dash_ws.store.runs()
    assert [r.kind for r in runs] == ["coldstart", "improve"]
    home = client.get("/").text
    assert all(f'href="/runs/{r.id}"' in home for r in runs)
    shown = {r["id"]: r["version"] for r in data.runs_overview(dash_ws)}  # only versions that were promoted
    promoted = {e.version_id for e in registry.events(dash_ws.store) if e.event in ("promoted", "forced")}
    assert {v for v in shown.values() if v} == {f"v{i}" for i in promoted}
    assert f'id="production">v{registry.alias_target(dash_ws.store, "production")}<' in home

    page = client.get(f"/runs/{runs[1].id}").text  # the improve cycle: graph, moves with who proposed them
    assert '<svg class="graph"' in page and page.count('<tr class="move') == len(dash_ws.store.nodes(runs[1].id))
    assert "<td>improve</td>" in page or "<td>doctrine</td>" in page
    assert 'class="timeline"' in page and 'data-kind="taxonomy"' in page

    models = client.get("/models").text
    events = registry.events(dash_ws.store)
    assert models.count('<li class="event') == len(events)
    gated = [e for e in events if e.data and "sets" in e.data]
    assert gated and models.count('<div class="gate-set">') == sum(len(e.data["sets"]) for e in gated)
    broken = [b for e in gated for s in e.data["sets"] for b in s["broken"]]
    if broken:  # side by side: input, gold, incumbent, candidate
        assert f'<td class="wrong">{broken[0]["now"]}</td>' in models

    traffic = client.get("/traffic").text
    n_poison = count(dash_ws, triage="poison")
    assert n_poison > 0 and f"{n_poison}</span><span>poisonous" in traffic
    assert '<svg class="chart"' in traffic and 'id="taxonomy"' in traffic and "Failure taxonomy" in traffic
    assert traffic.count('<details class="cluster"') == len(data.traffic_overview(dash_ws)["taxonomy"]["clusters"])
    assert 'data-kind="injection"' in traffic  # the planted injection, in the poison quarantine

    task = client.get("/task").text
    run_eval = runs[0].eval_set_id
    assert f'data-eval-set="{run_eval}"' in task and '<ul class="balance">' in task
    assert client.get("/ui/report.css").headers["content-type"].startswith("text/css")
    assert client.get("/ui/static/dashboard.js").status_code == 200


def test_untrusted_text_is_escaped_everywhere(client):
    for path in ("/traffic?q=pwned", "/ui/traces?q=pwned", "/ui/traces?source=%3Ci%3Esource%3C%2Fi%3E"):
        body = client.get(path).text
        assert "<script>window.__pwned" not in body and "&lt;script&gt;window.__pwned" in body, path
        assert "<i>source</i>" not in body
    assert HOSTILE not in client.get("/traffic").text


def test_trace_table_filters_and_pages_on_the_server(dash_ws, client):
    body = client.get("/ui/traces?verdict=poison").text
    verdicts = re.findall(r'<tr class="trace" data-verdict="([^"]+)"', body)
    n = count(dash_ws, triage="poison")
    assert verdicts and set(verdicts) == {"poison"} and len(verdicts) == min(n, data.PAGE)
    assert f"{n} traces match" in body or f"{n} trace matches" in body
    assert re.findall(r'data-verdict="([^"]+)"', client.get("/ui/traces?kind=injection").text) == ["poison"]
    one = client.get("/ui/traces?q=pwned").text
    assert one.count('<tr class="trace"') == 1 and "1 trace matches" in one
    total = count(dash_ws)
    last = (total - 1) // data.PAGE
    tail = client.get(f"/ui/traces?page={last}").text
    assert tail.count('<tr class="trace"') == total - last * data.PAGE and "‹ newer" in tail
    assert "No trace matches." in client.get("/ui/traces?q=no-such-text-anywhere").text
    assert "No trace matches." in client.get("/ui/traces?q=%25%25%25").text  # "%" is text, not a wildcard
    assert client.get("/ui/traces?q=%00card").status_code == 200  # a NUL is dropped, not sent to the database
    assert client.get("/ui/traces?page=-1").status_code == 422


def test_stamp_changes_when_the_store_does(dash_ws, client):
    before = client.get("/ui/stamp").json()["stamp"]
    assert client.get("/ui/stamp").json()["stamp"] == before
    dash_ws.store.decide(dash_ws.store.runs()[-1].id, "note", "a decision recorded while a page is open")
    assert client.get("/ui/stamp").json()["stamp"] != before


def test_missing_run_is_a_404_with_one_line(client):
    r = client.get("/runs/999")
    assert r.status_code == 404 and "no run 999" in r.json()["detail"]


@pytest.fixture
def two_versions(tmp_path, banking_sample):
    ws = Workspace.open(init_workspace(tmp_path / "ws"))
    ws.settings.search.workers = 1
    for n in (8, 10):
        rows = subset(banking_sample, 4, n)
        cold_start(ws, load_classification(write_jsonl(tmp_path / f"d{n}.jsonl", rows)), "route banking", 30,
                   make_trainer=lambda s: FakeTrainer(), embed_fn=None)
    return ws


def test_admin_buttons_need_the_token(two_versions):
    ws = two_versions
    ws.settings.serve.admin_token = ""  # `adaptloop init` writes a random one; without one the buttons are off
    with TestClient(create_ui_app(ws)) as c:
        assert "Read-only" in c.get("/models").text and "data-admin" not in c.get("/models").text
        assert c.post("/v1/admin/rollback").status_code == 403  # no token configured: off
    ws.settings.serve.admin_token = ADMIN_TOKEN
    with TestClient(create_ui_app(ws)) as c:
        page = c.get("/models").text
        assert 'data-version="v1" disabled' in page and 'id="rollback" data-admin disabled' in page
        assert c.post("/v1/admin/promote", json={"version": "v1"}).status_code == 401
        bad = c.post("/v1/admin/promote", json={"version": "v1"}, headers={"Authorization": "Bearer wrong"})
        assert bad.status_code == 401
        ok = c.post("/v1/admin/promote", json={"version": "v1"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert ok.status_code == 200 and ok.json()["production"] == "v1"
        assert registry.alias_target(ws.store, "production") == 1
        assert '<li class="event forced" data-event="forced" data-version="v1">' in c.get("/models").text


def test_serve_has_the_dashboard_and_traces_carry_latency(two_versions):
    ws = two_versions
    with TestClient(create_app(ws)) as c:
        assert c.get("/").status_code == 200 and "adaptloop" in c.get("/").text
        out = c.post("/v1/predict", json={"inputs": ["my card has not arrived"], "meta": {"user": "u1"}}).json()
        trace_id = out["outputs"][0]["trace_id"]
    row = ws.store.get(TraceRow, trace_id)  # the writer flushed on shutdown
    assert row.meta["user"] == "u1" and row.meta["latency_ms"] >= 0
    assert data.traffic_overview(ws)["latency"]["n"] == 1


def test_ui_command_is_documented():
    r = run("ui", "--help")
    assert r.exit_code == 0 and "dashboard" in r.output and "admin_token" in r.output
