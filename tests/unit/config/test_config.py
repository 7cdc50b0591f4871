"""Settings: `init` writes a config that loads (with a random admin token), and an invalid one is one line."""

import pytest

from adaptloop.config import Settings, load_settings
from adaptloop.errors import WorkspaceError
from adaptloop.workspace import init_workspace


def test_init_writes_a_config_that_loads(tmp_path):
    root = init_workspace(tmp_path / "ws")
    loaded = load_settings(root)
    token = loaded.serve.admin_token
    assert len(token) >= 24  # a random admin token for promote/rollback over HTTP
    assert loaded.model_copy(update={"serve": loaded.serve.model_copy(update={"admin_token": ""})}) == Settings()
    assert (root / ".adaptloop" / "artifacts").is_dir()
    init_workspace(root)  # idempotent: keeps the settings, token included
    assert load_settings(root).serve.admin_token == token


def test_invalid_config_is_one_line(tmp_path):
    root = init_workspace(tmp_path / "ws")
    (root / "adaptloop.toml").write_text("[agent]\neval_fraction = 3\n")
    with pytest.raises(WorkspaceError, match="eval_fraction"):
        load_settings(root)
    with pytest.raises(WorkspaceError, match="does not exist"):
        load_settings(tmp_path / "nope")
