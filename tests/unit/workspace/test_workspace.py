"""Opening a workspace."""

import json

import pytest

from adaptloop.workspace import Workspace, init_workspace


@pytest.mark.sqlite_only
def test_workspace_open_uses_relative_sqlite_url(tmp_path, monkeypatch):
    root = init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path)
    ws = Workspace.open(root)
    assert str(root) in str(ws.store.engine.url)
    assert json.loads(json.dumps(ws.settings.model_dump()))["store"]["url"].startswith("sqlite")
