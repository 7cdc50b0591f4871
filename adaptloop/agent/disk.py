"""What a workspace holds on disk, and what may go (``adaptloop disk``).

A workspace grows with every run: each finished node keeps its model (a 20-minute extraction search
keeps about 2 GB), and the frozen encoders' embeddings and token features are kept so that a run pays
each forward pass once (``.adaptloop/cache/``; wnut17's token features alone take 0.7 GB). Two things
may go, each on request:

- ``prune``: the models of nodes of finished runs that no model version uses. A version's model is a
  self-contained folder (an ensemble holds copies of its members), so the registry, rollback, ``eval``,
  ``export`` and ``distill`` keep working; a run's history (scores, predictions, decisions) stays. The
  nodes of a run that may still resume are kept, and so are ONNX exports of kept models. Staging
  folders of interrupted writes go too, once an hour old (a younger one may be a write in progress).
- ``caches``: the embedding cache and the token-feature store. They are rebuilt when needed (a next run
  pays its forward passes again). Refused while a run is running: its trials read them.

Each prune is recorded as a decision of every run whose nodes lost their models.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptloop.agent.export import STAGING_SUFFIX
from adaptloop.agent.predict import cache_folder
from adaptloop.config import STATE_DIR
from adaptloop.errors import WorkspaceBusy
from adaptloop.store import registry
from adaptloop.store.artifacts import STAGING_PREFIX, TMP_PREFIX
from adaptloop.workspace import Workspace

FINISHED = ("done", "failed", "abandoned")  # a run in any other state may resume (`adaptloop new --resume`)
CACHES = ("embeddings", "token-features")  # in cache_folder (train/frozen_tagger.py::feature_folder names the second)
LEFTOVER_PREFIXES = (STAGING_PREFIX, TMP_PREFIX)  # ArtifactStore's folders and files before their atomic rename
GRACE_S = 3600.0  # a write this recent may be in progress (a trial's, or `adaptloop export`'s): never removed


@dataclass
class Part:
    """One kind of thing on disk: how many, how large, and whether (and how) it may go."""

    name: str
    paths: list[Path] = field(default_factory=list)
    bytes: int = 0
    removable_with: str | None = None  # the option that removes it, or None: kept

    def add(self, path: Path) -> None:
        self.paths.append(path)
        self.bytes += size_of(path)

    def to_dict(self) -> dict[str, Any]:
        return {"part": self.name, "count": len(self.paths), "bytes": self.bytes, "removable_with": self.removable_with}


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (apparent sizes; links not followed)."""
    if path.is_symlink() or not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def survey(ws: Workspace) -> dict[str, Part]:
    """Every part of the workspace's state folder, each path counted once."""
    state = ws.root / STATE_DIR
    models = {r.id: (r.status, {n.model_artifact for n in ws.store.nodes(r.id) if n.model_artifact})
              for r in ws.store.runs()}
    versions = {mv.artifact for mv in registry.versions(ws.store)}
    resumable = set().union(*(m for status, m in models.values() if status not in FINISHED))
    node_models = set().union(*(m for _, m in models.values()))
    parts = {k: Part(name, removable_with=option) for k, name, option in (
        ("versions", "models of model versions", None),
        ("resumable", "node models of runs that may resume", None),
        ("unused", "node models no model version uses", "--prune"),
        ("data", "data, eval sets, predictions and other records", None),
        ("exports", "ONNX exports of kept models", None),
        ("orphan_exports", "ONNX exports of removed models", "--prune"),
        ("leftovers", "leftovers of interrupted writes", "--prune"),
        ("recent", "writes in progress (under an hour old)", None),
        ("embeddings", "embedding cache", "--caches"),
        ("token-features", "token-feature store", "--caches"),
        ("store", "the store (SQLite)", None),
        ("other", "other (live progress, logs)", None),
    )}
    now = time.time()
    kept = versions | resumable
    for path in _entries(ws.artifacts.root):
        name = path.name
        if name.startswith(LEFTOVER_PREFIXES):
            parts["recent" if now - path.lstat().st_mtime < GRACE_S else "leftovers"].add(path)
        elif name in kept:
            parts["versions" if name in versions else "resumable"].add(path)
        elif name in node_models:
            parts["unused"].add(path)
        else:
            parts["data"].add(path)
    exports = state / "exports"
    for path in sorted(exports.iterdir()) if exports.is_dir() else ():
        if path.name.endswith(STAGING_SUFFIX):
            parts["recent" if now - path.lstat().st_mtime < GRACE_S else "leftovers"].add(path)
        else:
            parts["exports" if path.name in kept else "orphan_exports"].add(path)
    cache = cache_folder(ws.root)
    for k in CACHES:
        if (cache / k).exists():
            parts[k].add(cache / k)
    counted = {ws.artifacts.root, exports, cache}
    for path in sorted(state.iterdir()) if state.is_dir() else ():
        if path in counted:
            continue
        parts["store" if path.name.startswith("store.db") else "other"].add(path)
    for p in cache.iterdir() if cache.is_dir() else ():
        if p.name not in CACHES:
            parts["other"].add(p)
    return parts


def _entries(root: Path) -> Iterable[Path]:
    """Each artifact (a file or a model folder) under the content-addressed store's two-letter folders, and the
    store's own leftovers."""
    if not root.is_dir():
        return
    for shard in sorted(root.iterdir()):
        if shard.name.startswith(LEFTOVER_PREFIXES):
            yield shard
        elif shard.is_dir():
            yield from sorted(shard.iterdir())


def disk_report(ws: Workspace, *, prune: bool = False, caches: bool = False) -> dict[str, Any]:
    """What the workspace holds; with ``prune`` / ``caches``, remove those parts first (see the module).

    Raises:
        WorkspaceBusy: ``caches`` while a run is running (its trials read them).
    """
    parts = survey(ws)
    running = [r.id for r in ws.store.runs() if r.status == "running"]
    if caches and running:
        raise WorkspaceBusy(f"run {', '.join(map(str, running))} is running and its trials read the caches; wait "
                            "for it to end (if its process is gone, `adaptloop new --resume --budget 0s` finishes "
                            "it), then run `adaptloop disk --caches` again")
    removed: dict[str, dict[str, int]] = {}
    chosen = [k for k, p in parts.items() if p.removable_with == "--prune" and prune
              or p.removable_with == "--caches" and caches]
    for k in chosen:
        if parts[k].paths:
            removed[k] = {"count": len(parts[k].paths), "bytes": parts[k].bytes}
            if k == "unused":
                _record_prune(ws, parts[k])
            for path in parts[k].paths:
                _remove(path)
    after = survey(ws) if removed else parts
    return {"workspace": str(ws.root), "parts": [p.to_dict() for p in after.values()],
            "total_bytes": sum(p.bytes for p in after.values()),
            "removable_bytes": {opt: sum(p.bytes for p in after.values() if p.removable_with == opt)
                                for opt in ("--prune", "--caches")},
            "removed": {parts[k].name: v for k, v in removed.items()}}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _record_prune(ws: Workspace, part: Part) -> None:
    """A decision in each run whose nodes lose their models: which nodes, and why."""
    gone = {p.name for p in part.paths}
    for run in ws.store.runs():
        if run.status not in FINISHED:
            continue
        nodes = [n for n in ws.store.nodes(run.id) if n.model_artifact in gone]
        if nodes:
            ws.store.decide(run.id, "prune", f"`adaptloop disk --prune` removed the models of {len(nodes)} nodes "
                            "that no model version uses (their scores, predictions and decisions stay)",
                            nodes=[n.id for n in nodes])


__all__ = ["disk_report", "survey", "size_of", "Part"]
