"""Preparing a run for extraction data: every line the loader quarantines is stored with its reason."""

import json

from sqlalchemy import select

from tests.conftest import run, write_jsonl


def test_quarantined_lines_are_kept_with_their_reason(tmp_path):
    ws = tmp_path / "ws"
    assert run("init", ws).exit_code == 0
    rows = [{"tokens": ["Ann", "met", "Bob"], "tags": ["B-PER", "O", "B-PER"]}]
    rows += [{"text": f"Hello {n} there", "spans": [[6, 6 + len(n), "PER"]]} for n in ("Ann", "Bob", "Eve", "Sue")]
    rows += [{"tokens": ["a", "b"], "tags": ["O"]}]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    from adaptloop.agent.prepare import prepare
    from adaptloop.data.sources import load_extraction
    from adaptloop.store.db import Quarantine
    from adaptloop.workspace import Workspace

    w = Workspace.open(ws)
    prepare(w, load_extraction(data), "detect PII", 10.0)
    q = w.store.all(select(Quarantine))
    assert len(q) == 1 and "2 tokens but 1 tags" in q[0].reason and json.loads(q[0].raw)["tags"] == ["O"]
