"""Core objects: pure data, no I/O, no heavy imports.

Each is a frozen dataclass with ``to_dict``/``from_dict`` so the store can keep it as JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Family = Literal["classification", "extraction", "generation"]


Progress = Callable[[str, int | None], Callable[[int], None]]
"""``progress(description, total)`` returns an ``advance(n)`` callable; the CLI draws bars."""


def no_progress(_description: str, _total: int | None) -> Callable[[int], None]:
    return lambda _n: None


def content_hash(obj: Any) -> str:
    """Stable sha256 of a JSON-serialisable object (keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class _Dict:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kwargs = {k: v for k, v in d.items() if k in names}
        return cls(**kwargs)


@dataclass(frozen=True)
class TaskSpec(_Dict):
    """What the user asked for, made explicit.

    Attributes:
        name: short slug for the task.
        prompt: the user's own words.
        family: ``classification``, ``extraction`` or ``generation``.
        labels: the label set, sorted (generation: the closed set of answers when there is one).
        primary_metric: the metric that selects and gates models.
        secondary_metrics: reported beside the primary one.
        out_of_scope_label: a label meaning "none of the above" (e.g. clinc150's ``oos``), if any.
        output: generation only: ``{"kind": math|code|summary|label|text, "instruction": text put
            before each input, "max_new_tokens": decoding limit, "base": the causal LM}``.
    """

    name: str
    prompt: str
    family: Family
    labels: tuple[str, ...]
    primary_metric: str = "accuracy"
    secondary_metrics: tuple[str, ...] = ("macro_f1",)
    out_of_scope_label: str | None = None
    output: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["labels"] = list(self.labels)
        d["secondary_metrics"] = list(self.secondary_metrics)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskSpec:
        d = dict(d)
        d["labels"] = tuple(d["labels"])
        d["secondary_metrics"] = tuple(d.get("secondary_metrics", ("macro_f1",)))
        return cls(**d)


@dataclass(frozen=True)
class Example(_Dict):
    """One labelled input.

    Attributes:
        text: the input text.
        label: the gold label (extraction: the stratification key, see ``data.spans.strat_key``).
        id: content hash of (text, label) — of (text, spans) for extraction; stable across runs.
        source: where it came from (file path, trace id, transform).
        weight: training weight.
        spans: extraction only: gold entities ``(start, end, label)``, end exclusive, sorted.
        group: records that share it were made together (a template, a document, a conversation):
            held-out sets take whole groups, so they measure unseen ones (``data.split``).
    """

    text: str
    label: str
    id: str = ""
    source: str = ""
    weight: float = 1.0
    spans: tuple[tuple[int, int, str], ...] = ()
    group: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.spans, tuple) or any(not isinstance(s, tuple) for s in self.spans):
            object.__setattr__(self, "spans", tuple(tuple(s) for s in self.spans))
        if not self.id:
            key = [self.text, [list(s) for s in self.spans]] if self.spans else [self.text, self.label]
            object.__setattr__(self, "id", content_hash(key)[:16])


@dataclass(frozen=True)
class EvalSet:
    """A frozen evaluation set; its id is the hash of its examples' ids."""

    examples: tuple[Example, ...]

    @property
    def id(self) -> str:
        return content_hash(sorted(e.id for e in self.examples))[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "examples": [e.to_dict() for e in self.examples]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalSet:
        s = cls(tuple(Example.from_dict(e) for e in d["examples"]))
        if "id" in d and d["id"] != s.id:
            raise ValueError(f"eval set content does not match its id {d['id']}")
        return s


@dataclass(frozen=True)
class Pipeline(_Dict):
    """A whole training pipeline: what the search varies.

    Attributes:
        recipe: data recipe, e.g. ``raw`` (deduplicated only) or ``curated`` (label issues removed).
        strategy: ``frozen`` (embeddings + logistic regression), ``finetune`` or ``lora``.
        encoder: HF id or local path of the encoder.
        hparams: strategy-specific hyperparameters (epochs, lr, C, ...).
        seed: the one source of randomness.
    """

    recipe: str
    strategy: str
    encoder: str = "sentence-transformers/all-MiniLM-L6-v2"
    hparams: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    @property
    def key(self) -> str:
        return content_hash(self.to_dict())[:12]


@dataclass(frozen=True)
class NodeResult(_Dict):
    """What training one pipeline produced: metrics on dev, cost, learning curve.

    ``chosen`` holds the hyperparameters the fit settled on (C, epochs actually used,
    ensemble weights), so the same pipeline can be refitted without a dev split.
    """

    dev_metrics: dict[str, float]
    train_seconds: float
    curve: list[dict[str, float]] = field(default_factory=list)
    notes: str = ""
    chosen: dict[str, Any] = field(default_factory=dict)


RUN_STATE_VERSION = 1


@dataclass(frozen=True)
class RunState:
    """Everything a run's trials and a later cycle need to read back: typed and versioned.

    Written and read only through ``Store.save_state`` / ``Store.run_state``; a state stored
    without a version (version 0: the same fields as a plain dict) is upgraded on reading.

    Attributes:
        spec: the task the run trains for.
        datasets: artifact address per role (``raw`` training data, ``dev``; the cold start also
            ``curated`` and ``augmented``; generation ``train`` after a teacher rewrote it).
        eval_artifact: the frozen eval set the run was selected against.
        label_issues: the training examples the data doubts (id, label, suggested label); None
            for runs prepared before they were kept (the recipes then diff raw and curated).
        curation: the counts of what curation kept and removed, and why.
        teacher: what the teacher did to the training targets, when one ran.
    """

    spec: TaskSpec
    datasets: dict[str, str]
    eval_artifact: str = ""
    label_issues: tuple[dict[str, Any], ...] | None = None
    curation: dict[str, Any] = field(default_factory=dict)
    teacher: dict[str, Any] | None = None
    version: int = RUN_STATE_VERSION

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"version": self.version, "spec": self.spec.to_dict(), "datasets": dict(self.datasets),
                             "eval_artifact": self.eval_artifact, "curation": dict(self.curation)}
        if self.label_issues is not None:
            d["label_issues"] = [dict(r) for r in self.label_issues]
        if self.teacher is not None:
            d["teacher"] = dict(self.teacher)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunState:
        """A stored state, upgraded from older versions; raises ValueError on one from a newer release."""
        version = int(d.get("version", 0))
        if version > RUN_STATE_VERSION:
            raise ValueError(f"run state version {version} is newer than this release reads ({RUN_STATE_VERSION}); "
                             "upgrade adaptloop")
        issues = d.get("label_issues")
        return cls(spec=TaskSpec.from_dict(d["spec"]), datasets=dict(d.get("datasets", {})),
                   eval_artifact=d.get("eval_artifact", ""),
                   label_issues=None if issues is None else tuple(dict(r) for r in issues),
                   curation=dict(d.get("curation", {})), teacher=d.get("teacher"))

    def with_dataset(self, role: str, address: str, **changes: Any) -> RunState:
        """A copy with ``role`` pointing at ``address`` (and any other field changed)."""
        return dataclasses.replace(self, datasets={**self.datasets, role: address}, **changes)


@dataclass(frozen=True)
class SetResult:
    """Candidate vs incumbent on one frozen eval set."""

    eval_set: str
    n: int
    incumbent: float
    candidate: float
    ci_low: float  # paired bootstrap interval of candidate − incumbent
    ci_high: float
    broken: list[dict[str, Any]]  # units previously right, now wrong: id, text, label, was, now
    fixed: int  # units previously wrong, now right
    passed: bool
    reasons: list[str] = field(default_factory=list)  # the rules that refused, with their numbers
    notes: list[str] = field(default_factory=list)  # every rule's verdict, with its numbers
    weighted_broken: float = 0.0  # broken units, doubted ones at DOUBT_WEIGHT
    p_breaks: float | None = None  # the paired test's P(X <= b | b + f, 1/2); None when not run


@dataclass(frozen=True)
class GateResult:
    """Candidate vs incumbent on every binding eval set: what promotion takes.

    Built by ``evaluate.gate`` (``gate`` for a candidate against production, ``first_model`` for
    a cold start's winner against the best constant answer); ``passed`` is the decision,
    ``notes`` which rule decided each set, with the numbers."""

    passed: bool
    epsilon: int
    metric: str
    sets: list[SetResult]
    pooled: SetResult | None = None  # the noise rule over every binding set at once (two or more)
    gain: str = ""  # the gain rule's verdict, with its numbers
    gained: bool = True

    @property
    def reasons(self) -> list[str]:
        return ([r for s in self.sets for r in s.reasons] + (self.pooled.reasons if self.pooled else [])
                + ([] if self.gained else [self.gain]))

    @property
    def notes(self) -> list[str]:
        """Which rule decided each set (and the pooled noise rule, and the gain rule), with the numbers."""
        return ([n for s in self.sets for n in s.notes] + (self.pooled.notes if self.pooled else [])
                + ([self.gain] if self.gain else []))

    @property
    def n_broken(self) -> int:
        return sum(len(s.broken) for s in self.sets)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "epsilon": self.epsilon, "metric": self.metric, "n_broken": self.n_broken,
                "reasons": self.reasons, "notes": self.notes, "sets": [dataclasses.asdict(s) for s in self.sets],
                "pooled": dataclasses.asdict(self.pooled) if self.pooled else None}
