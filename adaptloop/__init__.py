"""adaptloop: an agent that adapts small language models to a task and keeps them improving.

Importing this package must not import torch; heavy modules load inside ``train``/``serve``.
"""

from adaptloop.errors import (
    AdaptloopError,
    BudgetError,
    DataError,
    LabelError,
    NotFoundError,
    WorkspaceError,
)
from adaptloop.types import EvalSet, Example, NodeResult, Pipeline, TaskSpec

__version__ = "0.1.0"

__all__ = [
    "AdaptloopError",
    "BudgetError",
    "DataError",
    "EvalSet",
    "Example",
    "LabelError",
    "NodeResult",
    "NotFoundError",
    "Pipeline",
    "TaskSpec",
    "WorkspaceError",
    "__version__",
]
