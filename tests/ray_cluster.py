"""A throwaway local Ray cluster for the tests: ``ray start --head`` with two CPUs (two worker
processes run trials at once), in its own short temp folder, stopped with ``ray stop`` at the end;
and ``TrialWatch``, which sees (and kills) the Ray workers running trials."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def ray_cli() -> str | None:
    """The ``ray`` command beside this interpreter (the venv's), else on PATH."""
    here = Path(sys.executable).parent / "ray"
    return str(here) if here.is_file() else shutil.which("ray")


class RayCluster:
    def __init__(self, cpus: int = 2) -> None:
        self.cpus = cpus
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # sockets need a short path

    def _ray(self, *args: str) -> subprocess.CompletedProcess:
        cli = ray_cli()
        if cli is None:
            raise RuntimeError("Ray is not installed (pip install 'ray[default]')")
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        return subprocess.run([cli, *args], check=True, capture_output=True, text=True, timeout=180, env=env)

    def start(self) -> RayCluster:
        self._ray("start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(self.port),
                  "--num-cpus", str(self.cpus), "--num-gpus", "0", "--include-dashboard", "false",
                  "--disable-usage-stats", "--temp-dir", str(self.temp))
        return self

    def stop(self) -> None:
        try:
            self._ray("stop", "--force")
        finally:
            shutil.rmtree(self.temp, ignore_errors=True)


class TrialWatch:
    """Watches the Ray worker processes: a worker running a trial is titled `ray::trial <node>`. The
    worker of the first trial after the baseline is SIGKILLed ``kill_after`` seconds into it."""

    def __init__(self, kill_after: float) -> None:
        self.kill_after, self.seen, self.killed, self.killed_at = kill_after, {}, [], None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> TrialWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _watch(self) -> None:
        while not self._stop.is_set():
            ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
            for line in ps.splitlines():
                pid, _, args = line.strip().partition(" ")
                if not args.startswith("ray::trial "):
                    continue
                name = args.removeprefix("ray::trial ").strip()
                first_seen = self.seen.setdefault(name, time.monotonic())
                if (not self.killed and name != "baseline"
                        and time.monotonic() - first_seen >= self.kill_after):
                    os.kill(int(pid), signal.SIGKILL)
                    self.killed.append(name)
                    self.killed_at = time.time()
            time.sleep(0.05)
