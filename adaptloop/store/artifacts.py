"""Content-addressed artifact files under ``.adaptloop/artifacts/``.

An artifact is a file or a folder; its address is the sha256 of its content (for a folder,
of its sorted relative paths and file hashes). Every write goes to a temporary path in the
same folder first and is renamed into place, so a crash never leaves half an artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_sha(path: Path) -> str:
    """sha256 of a file, or of a folder's (relative path, file sha) list."""
    if path.is_file():
        return _file_sha(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(path).as_posix()}\0{_file_sha(p)}\n".encode())
    return h.hexdigest()


STAGING_PREFIX = ".staging-"  # a folder being filled before put_dir
TMP_PREFIX = ".tmp-"  # a file or copied folder before its atomic rename


class ArtifactStore:
    """Files addressed by content.

    Args:
        root: the artifacts folder (created on first write).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, address: str) -> Path:
        return self.root / address[:2] / address

    def exists(self, address: str) -> bool:
        return self.path(address).exists()

    def put_dir(self, folder: Path) -> str:
        """Move a finished folder into the store (atomic rename); returns its address."""
        address = tree_sha(folder)
        dest = self.path(address)
        if dest.exists():
            shutil.rmtree(folder, ignore_errors=True)
            return address
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(folder, dest)
        except OSError:
            if not dest.exists():  # another filesystem: copy next to dest, then rename
                tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=TMP_PREFIX))
                shutil.copytree(folder, tmp, dirs_exist_ok=True)
                try:
                    os.replace(tmp, dest)
                except OSError:
                    shutil.rmtree(tmp, ignore_errors=True)
                    if not dest.exists():
                        raise
            # else another writer (a trial in another worker) stored the same content meanwhile: it is there
            shutil.rmtree(folder, ignore_errors=True)
        return address

    def staging_dir(self) -> Path:
        """A fresh temporary folder on the store's filesystem, to be filled then ``put_dir``."""
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=self.root, prefix=STAGING_PREFIX))

    def put_bytes(self, data: bytes, suffix: str = "") -> str:
        address = hashlib.sha256(data).hexdigest() + suffix
        dest = self.path(address)
        if dest.exists():
            return address
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=TMP_PREFIX)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
        return address

    def put_json(self, obj: Any) -> str:
        blob = json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return self.put_bytes(blob, ".json")

    def put_jsonl(self, rows: Iterable[dict[str, Any]]) -> str:
        blob = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows)
        return self.put_bytes(blob.encode("utf-8"), ".jsonl")

    def get_json(self, address: str) -> Any:
        return json.loads(self.path(address).read_text(encoding="utf-8"))

    def get_jsonl(self, address: str) -> list[dict[str, Any]]:
        with self.path(address).open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
