"""A workspace: settings + store + artifacts, built once per command."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from adaptloop.config import (
    STATE_DIR,
    Settings,
    load_settings,
    resolve_workspace,
    store_url,
    write_settings,
)
from adaptloop.errors import WorkspaceError
from adaptloop.store import ArtifactStore, Store


@dataclass
class Workspace:
    root: Path
    settings: Settings
    store: Store
    artifacts: ArtifactStore

    @classmethod
    def open(cls, workspace: str | Path | None = None, *, store: str | None = None) -> Workspace:
        """Open an existing workspace (``store``: this store URL, over the settings and the environment —
        what a trial on another machine is handed by the run that started it).

        Raises:
            WorkspaceError: it does not exist or its settings are invalid.
        """
        root = resolve_workspace(workspace)
        settings = load_settings(root)
        url = store or store_url(root, settings)
        _check_store_file(root, url)
        return cls(root, settings, Store(url), ArtifactStore(root / STATE_DIR / "artifacts"))


def _check_store_file(root: Path, url: str) -> None:
    """Refuse to open an SQLite store that would start empty beside a history's artifacts (a deleted
    ``store.db``), or that cannot be written (a read-only workspace).

    Raises:
        WorkspaceError: the store file is missing while artifacts exist, or the folder is read-only.
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix) or ":memory:" in url:
        return
    db = Path(url.removeprefix(prefix))
    artifacts = root / STATE_DIR / "artifacts"
    if not db.exists() and artifacts.is_dir() and any(p.is_dir() for p in artifacts.iterdir()):
        raise WorkspaceError(f"{db} is missing but {artifacts} holds models and data: the history that names them "
                             "is gone; restore the file from a backup, or start a new workspace with "
                             "`adaptloop init NEW_FOLDER`")
    if not os.access(db.parent if not db.exists() else db, os.W_OK):
        raise WorkspaceError(f"workspace {root} is read-only ({db} cannot be written); copy it somewhere writable or "
                             "fix its permissions")


def init_workspace(path: str | Path, *, settings: Settings | None = None) -> Path:
    """Create ``adaptloop.toml`` and ``.adaptloop/`` (idempotent: keeps existing settings)."""
    root = Path(path).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise WorkspaceError(f"{root} is a file; choose a folder name for the workspace")
    (root / STATE_DIR / "artifacts").mkdir(parents=True, exist_ok=True)
    if not (root / "adaptloop.toml").exists():
        import secrets

        settings = settings or Settings()
        if not settings.serve.admin_token:  # promote/rollback over HTTP need it
            settings = settings.model_copy(update={"serve": settings.serve.model_copy(
                update={"admin_token": secrets.token_urlsafe(24)})})
        write_settings(root, settings)
    ws = Workspace.open(root)  # validates and creates the tables
    ws.store.engine.dispose()
    return root
