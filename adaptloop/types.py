"""Core objects: pure data, no I/O, no heavy imports.

Each is a frozen dataclass with ``to_dict``/``from_dict`` so the store can keep it as JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Family = Literal["classification", "extraction", "generation"]


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
