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
        definitions: label or entity type → what it covers (when the task was drafted, not read from data).
        edge_cases: the boundary rules the drafted task states.
    """

    name: str
    prompt: str
    family: Family
    labels: tuple[str, ...]
    primary_metric: str = "accuracy"
    secondary_metrics: tuple[str, ...] = ("macro_f1",)
    out_of_scope_label: str | None = None
    output: dict[str, Any] = field(default_factory=dict)
    definitions: dict[str, str] = field(default_factory=dict)
    edge_cases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["labels"] = list(self.labels)
        d["secondary_metrics"] = list(self.secondary_metrics)
        d["edge_cases"] = list(self.edge_cases)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskSpec:
        d = dict(d)
        d["labels"] = tuple(d["labels"])
        d["secondary_metrics"] = tuple(d.get("secondary_metrics", ("macro_f1",)))
        d["edge_cases"] = tuple(d.get("edge_cases", ()))
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
class Sample:
    """One prompt and its reference completion.

    Attributes:
        prompt: the user's turn (the last one when ``context`` holds earlier turns).
        target: the reference completion (the assistant's turn).
        context: earlier chat turns ``(role, content)`` before ``prompt``, system prompt included.
        extra: fields the metric needs (tests, entry point, more references).
        id: content hash of (context, prompt, target).
        source: where it came from.
    """

    prompt: str
    target: str
    context: tuple[tuple[str, str], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    id: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", content_hash([list(map(list, self.context)), self.prompt,
                                                         self.target])[:16])

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "target": self.target, "context": [list(c) for c in self.context],
                "extra": dict(self.extra), "id": self.id, "source": self.source}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sample:
        return cls(prompt=d["prompt"], target=d["target"], context=tuple(tuple(c) for c in d.get("context", ())),
                   extra=dict(d.get("extra") or {}), id=d.get("id", ""), source=d.get("source", ""))

    def messages(self, *, with_target: bool = False) -> list[dict[str, str]]:
        """The chat turns, ending with the user's prompt (and the target when asked)."""
        out = [{"role": r, "content": c} for r, c in self.context] + [{"role": "user", "content": self.prompt}]
        return out + ([{"role": "assistant", "content": self.target}] if with_target else [])


@dataclass(frozen=True)
class EvalSet:
    """A frozen evaluation set; its id is the hash of its items' ids.

    Classification and extraction hold labelled ``examples``; generation holds ``samples``
    (prompt → reference). One of the two is empty.
    """

    examples: tuple[Example, ...] = ()
    samples: tuple[Sample, ...] = ()

    @property
    def items(self) -> tuple[Example, ...] | tuple[Sample, ...]:
        """What a predictor scores: the examples, or the samples of a generation task."""
        return self.samples or self.examples

    @property
    def id(self) -> str:
        return content_hash(sorted(e.id for e in self.items))[:16]

    def to_dict(self) -> dict[str, Any]:
        key = "samples" if self.samples else "examples"
        return {"id": self.id, key: [e.to_dict() for e in self.items]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalSet:
        s = cls(examples=tuple(Example.from_dict(e) for e in d.get("examples", ())),
                samples=tuple(Sample.from_dict(e) for e in d.get("samples", ())))
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


# ---------------------------------------------------------------------------- diagnosis
FINDING_KINDS = ("confusable_pair", "over_prediction", "under_prediction", "overfit", "underfit", "label_noise",
                 "slice",
         # extraction (``diagnose.entities``)
         "spurious_entities", "boundary_errors", "type_confusion",
         # generation (``diagnose.generation``)
         "format_errors", "wrong_content", "truncation", "repetition", "extraction_failure", "length_drift")
MOVES = (
    "contrastive",  # hard negatives + contrastive pairs for confusable labels
    "larger-encoder",
    "reweight",  # class re-weighting
    "threshold",  # decision bias / abstention tuned on dev
    "fewer-epochs",
    "lower-lr",
    "more-epochs",
    "finetune",
    "clean",  # drop suspected label issues
    "augment",  # typo / casing / truncation variants
    # extraction
    "negatives",  # entity-free sentences mined from the training text
    "span-threshold",  # per-type confidence thresholds tuned on dev
    "diversify",  # entity surface forms swapped between same-type mentions
    "lora",
    # generation
    "sft", "format-normalise", "prompt-template", "cot", "larger-model", "more-tokens", "decoding",
)


@dataclass(frozen=True)
class Finding:
    """One thing wrong with a model, with its evidence and what might fix it.

    Attributes:
        kind: one of ``FINDING_KINDS``.
        summary: one readable line, with the numbers.
        severity: in [0, 1]; ranks findings (see the module docstring for what it measures).
        target: what the finding is about: ``{"labels": [a, b]}`` (sorted) for confusable_pair and
            label_noise, ``{"label": x}`` for over/under_prediction, ``{"slice": name}`` for slice,
            ``{}`` for overfit/underfit.
        evidence: JSON-serialisable counts, and ``example_ids`` (at most ``MAX_EXAMPLES``).
        suggests: intervention names from ``MOVES``, most promising first.

    Raises:
        ValueError: on an unknown kind or intervention, or a severity outside [0, 1].
    """

    kind: str
    summary: str
    severity: float
    target: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    suggests: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in FINDING_KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}; expected one of {', '.join(FINDING_KINDS)}")
        if not 0.0 <= self.severity <= 1.0:
            raise ValueError(f"severity must lie in [0, 1], got {self.severity}")
        unknown = [s for s in self.suggests if s not in MOVES]
        if unknown:
            raise ValueError(f"unknown interventions {unknown}; expected some of {', '.join(MOVES)}")
        object.__setattr__(self, "suggests", tuple(self.suggests))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)  # deep copies target and evidence
        d["suggests"] = list(self.suggests)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls(kind=d["kind"], summary=d["summary"], severity=float(d["severity"]),
                   target=dict(d.get("target", {})), evidence=dict(d.get("evidence", {})),
                   suggests=tuple(d.get("suggests", ())))


def finding_rank(f: Finding) -> tuple[float, int, str]:
    return (-f.severity, FINDING_KINDS.index(f.kind), f.summary)


@dataclass(frozen=True)
class Diagnosis:
    """Every finding about one model on one dev set, highest severity first.

    Attributes:
        findings: sorted on construction by severity (ties: kind order, then summary).
        n: rows diagnosed.
        errors: rows whose prediction was wrong.
    """

    findings: tuple[Finding, ...] = ()
    n: int = 0
    errors: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "findings", tuple(sorted(self.findings, key=finding_rank)))

    def top(self, kind: str | None = None) -> Finding | None:
        """The most severe finding (of ``kind``, when given), or None."""
        return next((f for f in self.findings if kind is None or f.kind == kind), None)

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "errors": self.errors, "findings": [f.to_dict() for f in self.findings]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Diagnosis:
        return cls(findings=tuple(Finding.from_dict(f) for f in d.get("findings", ())),
                   n=int(d["n"]), errors=int(d["errors"]))


# ---------------------------------------------------------------------------- production traces
@dataclass(frozen=True)
class Verdict:
    """A trace's triage: whether it may be learned from, why, and with what trust.

    Attributes:
        triage: ok | fixable | poison | out_of_scope | unlabelled | unjudged.
        kind: why: injection, contradiction, burst, eval_conflict, label_noise, drift, or the
            fix pattern.
        label: the label it would be learned with (classification; ok / fixable).
        spans: the entities it would be learned with (extraction; ok / fixable).
        failure: the model's answer was wrong by its feedback.
    """

    id: str
    triage: str
    kind: str
    reason: str
    trust: float
    label: str | None = None
    failure: bool = False
    spans: tuple[tuple[int, int, str], ...] | None = None


@dataclass(frozen=True)
class CarriedTrace:
    """A trusted trace (``ok`` / ``fixable``) judged by an earlier cycle that no model in
    production's line has learned from yet: it joins the next cycle's curriculum."""

    id: str
    text: str
    label: str | None  # its feedback label (classification)
    triage: str  # ok | fixable
    spans: tuple[tuple[int, int, str], ...] | None = None  # its feedback entities (extraction)
    source: str | None = None  # who gave the feedback (``llm-judge:…`` for the LLM judge)
