"""The training seam: one Protocol for every backend, one for what it returns."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from adaptloop.types import Example, NodeResult, Pipeline, Progress, TaskSpec, no_progress

TAGGER_DEFAULTS: dict[str, float] = {"epochs": 6.0, "lr": 1e-4, "head_lr": 1e-3}
"""A token-classification fine-tune's defaults (here, not in ``train.tagger``: the search reads
them without importing torch)."""

@runtime_checkable
class TrainedModel(Protocol):
    """A fitted classifier."""

    labels: tuple[str, ...]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, shape (len(texts), len(labels)); rows sum to 1."""
        ...

    def save(self, folder: Path) -> None:
        """Write everything needed to reload into an empty folder."""
        ...


def no_report(score: float) -> None:
    """A ``FitContext.report`` that tells no one."""


@dataclass(frozen=True)
class FitContext:
    """What every backend gets besides the data.

    Attributes:
        deadline: ``time.monotonic()`` value by which fitting must end (best state kept).
        progress: progress-bar factory.
        device: torch device string.
        embeddings: cache of base-encoder embeddings shared between nodes (may be None).
        checkpoint: ``time.monotonic()`` value after which a fit whose best dev score is still below
            ``incumbent()`` (the search's best node) stops, keeping its best state.
        incumbent: the dev score to beat by ``checkpoint``, asked again after each dev check past it
            (other trials finish or improve meanwhile).
        report: told each new best dev score of this fit (the search shares it with the trials
            running beside this one, whose ``incumbent`` it becomes).
        cutoff: ``time.monotonic()`` value by which the search wants its running trials done, asked
            whenever the time left is: sooner than ``deadline`` when the search keeps part of the budget
            back after this fit started (a student's share, once a model too slow to serve may win). A
            plan is sized to ``deadline``; the cutoff only stops the fit.
    """

    deadline: float = float("inf")
    progress: Progress = no_progress
    device: str = "cpu"
    embeddings: object | None = None
    checkpoint: float = float("inf")
    incumbent: Callable[[], float] = field(default=lambda: float("-inf"))
    report: Callable[[float], None] = no_report
    cutoff: Callable[[], float] = field(default=lambda: float("inf"))

    def seconds_left(self) -> float:
        return min(self.deadline, self.cutoff()) - time.monotonic()


class Trainer(Protocol):
    """``fit`` trains one pipeline from the base model; never mutates its inputs."""

    def fit(self, spec: TaskSpec, pipeline: Pipeline, train: Sequence[Example],
            dev: Sequence[Example], ctx: FitContext) -> tuple[TrainedModel, NodeResult]:
        ...


def label_ids(examples: Sequence[Example], labels: Sequence[str]) -> np.ndarray:
    index = {lab: i for i, lab in enumerate(labels)}
    return np.array([index[e.label] for e in examples], dtype=np.int64)


def class_weights(value: object, labels: Sequence[str]) -> dict[int, float] | str | None:
    """A pipeline's ``class_weight`` for sklearn/torch: None, "balanced", or {class id: weight}.

    Pipelines name classes by label (``{"card_arrival": 2.0}``); unnamed classes weigh 1.
    """
    if value is None or value == "balanced":
        return value  # type: ignore[return-value]
    if not isinstance(value, dict):
        raise ValueError(f"class_weight must be 'balanced' or a mapping label -> weight, not {value!r}")
    index = {lab: i for i, lab in enumerate(labels)}
    return {i: float(value.get(lab, 1.0)) for lab, i in index.items()}


def predict_labels(model: TrainedModel, texts: Sequence[str]) -> list[str]:
    probs = model.predict_proba(texts)
    return [model.labels[i] for i in probs.argmax(1)]
