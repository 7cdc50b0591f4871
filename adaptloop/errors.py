"""One exception tree for everything a user can get wrong.

    AdaptloopError              a problem the user can fix; the CLI prints it on one line, exit 2
    ├── WorkspaceError          no workspace, or a broken adaptloop.toml
    │   └── WorkspaceBusy       a running run holds what the command would change
    ├── DataError               a data file that cannot be used (missing, empty, wrong fields, ...)
    ├── LabelError              labels that do not fit the task (one class, unknown at eval time)
    ├── BudgetError             a budget string that does not parse
    ├── NotFoundError           a task, run, model version or alias that does not exist
    └── RunFailed               a run stopped by an error: it is marked failed, nothing promoted (exit 3)

Every message names the problem and the fix, in one sentence each.
"""

from __future__ import annotations


class AdaptloopError(Exception):
    """Base class: a problem with the user's input, reported without a traceback."""


class WorkspaceError(AdaptloopError):
    """The workspace is missing or its settings are invalid."""


class WorkspaceBusy(WorkspaceError):
    """A run in progress uses what the command would remove or change."""


class DataError(AdaptloopError):
    """A data file cannot be read or has the wrong shape."""


class LabelError(AdaptloopError):
    """The labels in a file do not fit the task."""


class BudgetError(AdaptloopError):
    """A budget string does not parse."""


class NotFoundError(AdaptloopError):
    """A named object is not in the store."""


class PromotionConflict(AdaptloopError):
    """An alias moved between reading it and moving it (another process promoted or rolled back first)."""


class RunFailed(AdaptloopError):
    """A run stopped by an error inside it: the run and its running nodes are marked failed with the
    error, and nothing was promoted."""

    def __init__(self, run_id: int, exc: BaseException) -> None:
        self.run_id = run_id
        first = (str(exc).splitlines() or [""])[0][:300]
        super().__init__(f"run {run_id} failed ({type(exc).__name__}: {first}); nothing was promoted; "
                         f"`adaptloop runs {run_id}` shows where it stopped")
