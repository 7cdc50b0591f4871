"""A workspace: settings + store + artifacts, built once per command."""

from __future__ import annotations

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
    def open(cls, workspace: str | Path | None = None) -> Workspace:
        """Open an existing workspace.

        Raises:
            WorkspaceError: it does not exist or its settings are invalid.
        """
        root = resolve_workspace(workspace)
        settings = load_settings(root)
        return cls(root, settings, Store(store_url(root, settings)),
                   ArtifactStore(root / STATE_DIR / "artifacts"))


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
