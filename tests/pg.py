"""A throwaway PostgreSQL server for the tests: the installed binaries (Debian's ``postgresql``),
a data directory under the test's temp folder, trust auth on 127.0.0.1, a free port, fsync off.
As root (CI containers) the server runs as the ``postgres`` user, which PostgreSQL requires.
Each test gets its own database (``fresh_database``)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path


def bindir() -> Path | None:
    """Where ``pg_ctl`` and ``initdb`` are: PATH first, then Debian's versioned folders."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


class PostgresServer:
    def __init__(self, root: Path) -> None:
        bin_ = bindir()
        if bin_ is None:
            raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        self.bin, self.root = bin_, root
        self.data, self.sock = root / "data", root / "sock"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> PostgresServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sock, "postgres")
            self.root.chmod(0o755)
            for parent in self.root.parents:  # the postgres user must reach its folder
                if parent == Path("/") or parent.stat().st_mode & 0o001:
                    break
                parent.chmod(parent.stat().st_mode | 0o001)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start")
        return self

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.SubprocessError:
            pass

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def fresh_database(self) -> str:
        """A new empty database; its SQLAlchemy URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
