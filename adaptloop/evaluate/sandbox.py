"""Run untrusted Python (a model's code plus its tests) in a child process, for pass@1.

Each program runs in ``python -I`` (isolated: no user site, no PYTHON* variables) with an
empty environment, its own temporary working directory (removed afterwards), and
``resource`` limits on CPU seconds, address space, written file size and processes. Before
the program starts, an audit hook (which the program cannot remove) refuses:

- any network use (``socket.*`` events),
- opening a file for writing outside the temporary directory,
- removing or renaming files outside it, and starting other programs
  (``subprocess``/``os.system``/``exec*``).

A wall-clock timeout kills the whole process group. This is a guard against the mistakes and
accidents of generated code (infinite loops, stray writes, network calls), not a security
boundary against a determined attacker; run untrusted code from others in a container.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SandboxConfig:
    timeout: float = 10.0  # wall seconds per program; slow reference solutions need a few
    cpu_seconds: int = 10
    memory_mb: int = 1024  # address space; numpy-free test code stays far below
    file_mb: int = 16  # largest file the program may write (in its temp dir)
    workers: int = 2  # programs run at once

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.cpu_seconds <= 0 or self.memory_mb <= 0 or self.workers < 1:
            raise ValueError("timeout, cpu_seconds, memory_mb and workers must be positive")


@dataclass(frozen=True)
class RunResult:
    passed: bool
    status: str  # passed | failed | timeout | refused | error
    detail: str  # the last line of stderr, or what was refused


# Runs first inside the child: limits, then the audit hook, then the program.
_PRELUDE = r"""
import os, resource, sys
_root = os.path.realpath(os.getcwd())
_lim = __LIMITS__
resource.setrlimit(resource.RLIMIT_CPU, (_lim["cpu"], _lim["cpu"]))
resource.setrlimit(resource.RLIMIT_AS, (_lim["mem"], _lim["mem"]))
resource.setrlimit(resource.RLIMIT_FSIZE, (_lim["fsize"], _lim["fsize"]))
try:
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
except (ValueError, OSError):
    pass

def _inside(path):
    try:
        p = os.path.realpath(os.fsdecode(path) if not isinstance(path, int) else "")
    except Exception:
        return False
    return p == _root or p.startswith(_root + os.sep)

class SandboxRefusal(Exception):
    pass

def _refuse(what):
    sys.stderr.write("SANDBOX_REFUSED: " + what + "\n")
    sys.stderr.flush()
    os._exit(86)

def _hook(event, args):
    if event.startswith("socket."):
        _refuse("network (" + event + ")")
    if event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                 "os.forkpty", "pty.spawn"):
        _refuse("starting a process (" + event + ")")
    if event == "open" and args and not isinstance(args[0], int):
        mode = args[1] if len(args) > 1 and isinstance(args[1], str) else "r"
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        writes = any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        if writes and not _inside(args[0]):
            _refuse("writing outside the sandbox (" + os.fsdecode(args[0]) + ")")
    if event in ("os.remove", "os.rmdir", "os.rename", "os.truncate", "os.chmod", "os.chown",
                 "shutil.rmtree", "os.mkdir", "os.symlink", "os.link"):
        paths = [a for a in args if isinstance(a, (str, bytes, os.PathLike))]
        if any(not _inside(p) for p in paths):
            _refuse(event + " outside the sandbox")

sys.addaudithook(_hook)
del _hook
"""


def program(code: str, tests: str) -> str:
    """One program: the candidate code, then its tests (asserts, or a ``check(...)`` call)."""
    return f"{code}\n\n{tests}\n"


def run_program(source: str, config: SandboxConfig = SandboxConfig()) -> RunResult:
    """Run ``source`` under the sandbox; passed means exit status 0 within the limits."""
    limits = {"cpu": config.cpu_seconds, "mem": config.memory_mb * 2**20, "fsize": config.file_mb * 2**20}
    prelude = _PRELUDE.replace("__LIMITS__", json.dumps(limits))
    work = Path(tempfile.mkdtemp(prefix="adaptloop-sandbox-"))
    try:
        (work / "prelude.py").write_text(prelude, encoding="utf-8")
        (work / "program.py").write_text(source, encoding="utf-8")
        runner = ("exec(compile(open('prelude.py').read(), 'prelude', 'exec'))\n"
                  "src = open('program.py').read()\n"
                  "exec(compile(src, 'program.py', 'exec'), {'__name__': '__main__'})\n")
        try:
            proc = subprocess.Popen([sys.executable, "-I", "-c", runner], cwd=work,
                                    env={"PATH": "/usr/bin:/bin", "TMPDIR": str(work)}, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    start_new_session=True)
        except OSError as exc:
            return RunResult(False, "error", f"could not start python: {exc}")
        try:
            _out, err = proc.communicate(timeout=config.timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            return RunResult(False, "timeout", f"no exit within {config.timeout:g} s")
        text = err.decode("utf-8", "replace").strip()
        last = text.splitlines()[-1] if text else ""
        if "SANDBOX_REFUSED:" in text:
            refused = next(x for x in text.splitlines() if x.startswith("SANDBOX_REFUSED:"))
            return RunResult(False, "refused", refused.split(":", 1)[1].strip())
        if proc.returncode == 0:
            return RunResult(True, "passed", "")
        if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            return RunResult(False, "timeout", f"CPU limit ({config.cpu_seconds} s)")
        return RunResult(False, "failed", last[:300] or f"exit status {proc.returncode}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def pass_at_1(codes: Sequence[str], tests: Sequence[str], config: SandboxConfig = SandboxConfig()) -> dict:
    """pass@1 of one completion per problem (greedy decoding): the share whose tests pass.

    Args:
        codes: the code of each completion (see ``evaluate.generation.extract_code``), length n.
        tests: each problem's tests, length n.

    Returns:
        ``{"n", "pass_at_1", "rows": [{"passed", "status", "detail"}]}``.
    """
    if len(codes) != len(tests):
        raise ValueError(f"{len(codes)} programs but {len(tests)} test blocks")
    with ThreadPoolExecutor(max_workers=config.workers) as pool:
        results = list(pool.map(lambda ct: run_program(program(*ct), config), zip(codes, tests)))
    rows = [{"passed": r.passed, "status": r.status, "detail": r.detail} for r in results]
    return {"n": len(rows), "pass_at_1": sum(r["passed"] for r in rows) / len(rows) if rows else 0.0,
            "rows": rows}
