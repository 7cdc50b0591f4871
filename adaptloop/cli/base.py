"""What every command shares: the offline defaults, the group that turns errors into exit codes, the options."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from rich.markup import escape
from typer.core import TyperGroup

from adaptloop.errors import AdaptloopError, RunFailed
from adaptloop.report.terminal import err

if TYPE_CHECKING:
    from adaptloop.workspace import Workspace

# Offline by default: nothing may wait on a model hub (users with a hub can set it to 0).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


class Group(TyperGroup):
    """Maps user errors to one line on stderr and exit code 2, a run stopped by an error to 3 (nothing
    promoted), Ctrl-C to 130, and anything unexpected to one line and 1 (its traceback kept in a file)."""

    def invoke(self, ctx: click.Context) -> Any:
        # SIGTERM (a job scheduler, `kill`, a container stopping) takes Ctrl-C's path: the run is marked
        # interrupted and resumable, and the search's worker processes are stopped with it (killed
        # outright, they kept training until their deadlines)
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
        try:
            return super().invoke(ctx)
        except RunFailed as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            ctx.exit(3)
        except AdaptloopError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            err.print("interrupted; the store is consistent — `adaptloop new --resume` continues "
                      "(`--resume --budget 0s` promotes the best model so far)")
            ctx.exit(130)
        except (typer.TyperException, typer.Exit, typer.Abort, click.ClickException, click.exceptions.Exit,
                click.Abort):
            raise  # usage errors and exits: typer prints and exits as usual
        except Exception as exc:
            from sqlalchemy.exc import SQLAlchemyError

            if not isinstance(exc, SQLAlchemyError):
                where = _keep_traceback(exc)
                err.print("[red]error:[/] " + escape(f"unexpected {type(exc).__name__}: {str(exc)[:200]} — a bug in "
                          f"adaptloop; its traceback is in {where}"), highlight=False, soft_wrap=True)
                ctx.exit(1)
            first = str(exc).splitlines()[0]
            err.print("[red]error:[/] " + escape(f"the store failed ({first}); check [store] url in "
                      "adaptloop.toml and that the database is reachable"), highlight=False,
                      soft_wrap=True)
            ctx.exit(2)
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _keep_traceback(exc: BaseException) -> Path:
    """Write the traceback of an unexpected error to a file (for a bug report) and return its path."""
    import tempfile
    import traceback

    fd, name = tempfile.mkstemp(prefix="adaptloop-error-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    return Path(name)


WorkspaceOpt = Annotated[Path | None, typer.Option(
    "--workspace", "-w", help="Workspace folder [default: $ADAPTLOOP_WORKSPACE, else the current "
                              "directory].", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout.")]


def open_workspace(workspace: Path | None) -> Workspace:
    """The workspace at ``workspace`` (default: $ADAPTLOOP_WORKSPACE, else the current directory)."""
    from adaptloop.workspace import Workspace

    return Workspace.open(workspace)
