"""A store written by an older release opens, lists and improves with this one.

``tests/fixtures/old_store/workspace`` was made by ``build.py`` beside it, run with the release
before typed run state (commit 2053d31): run state as plain dicts without a version, registry events
without their gate data, nodes without their proposer. Opening it adds the new columns; reading
upgrades the state; an improve cycle then runs on it.
"""

import json
import random
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adaptloop.agent.improve import ImproveCycle
from adaptloop.agent.traffic import import_traces
from adaptloop.cli import app
from adaptloop.store import registry
from adaptloop.train.fake import FakeTrainer, _features
from adaptloop.types import RUN_STATE_VERSION
from adaptloop.workspace import Workspace

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "old_store"


def _fake(_strategy):
    return FakeTrainer()


@pytest.mark.sqlite_only
def test_an_older_store_opens_lists_and_improves(tmp_path):
    root = tmp_path / "ws"
    shutil.copytree(FIXTURES / "workspace", root)
    ws = Workspace.open(root)
    # read: state upgraded from version 0, registry and nodes as they were
    cold, improve = ws.store.runs()
    state = ws.store.run_state(cold)
    assert state.version == RUN_STATE_VERSION and state.spec.family == "classification"
    assert {"raw", "dev", "curated"} <= set(state.datasets) and state.label_issues is not None
    assert ws.store.run_state(improve).curation["trusted_traces"] > 0
    assert [e.event for e in registry.events(ws.store)] == ["registered", "promoted", "registered", "candidate",
                                                            "promoted"]
    assert all(e.data is None for e in registry.events(ws.store))  # the column is new: nothing was kept then
    # list, through the CLI
    runner = CliRunner()
    out = runner.invoke(app, ["runs", "--json", "-w", str(root)])
    assert out.exit_code == 0, out.output
    runs = json.loads(out.output)["runs"]
    assert [r["kind"] for r in runs] == ["coldstart", "improve"]
    assert all(n["proposer"] == "doctrine" for n in runs[0]["nodes"])
    out = runner.invoke(app, ["models", "--json", "-w", str(root)])
    assert out.exit_code == 0 and "v2" in out.output
    # improve: new traffic, one cycle on the new code
    rows = [json.loads(x) for x in (FIXTURES / "banking5.jsonl").read_text().splitlines()]
    rng = random.Random(1)
    traffic = [r for r in rows if r["role"] == "traffic"]
    rng.shuffle(traffic)
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(json.dumps({"id": f"new{i}", "input": r["text"] + " please",
                                        "feedback": {"label": r["label"], "source": f"u{i % 4}"}}) + "\n"
                            for i, r in enumerate(traffic)))
    assert import_traces(ws, str(path))["new"] == len(traffic)
    ws.settings.improve.min_failures = 5
    result = ImproveCycle(ws, 30, make_trainer=_fake, embed_fn=_features).run()
    assert result.candidate == "v3"  # a candidate was trained, and judged: the registry has its verdict
    last = registry.events(ws.store)[-1]
    assert (last.version_id, last.event, last.reason) == (3, result.decision, result.reason)
    third = ws.store.runs()[-1]
    assert ws.store.run_state(third).version == RUN_STATE_VERSION
