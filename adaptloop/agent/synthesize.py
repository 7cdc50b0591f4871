"""A task from a prompt alone: draft the spec, then write the eval set first and training data second.

Two drafters, one shape of result (``Drafted``: a spec to confirm and two JSONL files in the workspace):

- **Offline** — where a well-kept library generates data for the task, it is used: PII detection from
  Faker templates (``data.synth_pii``), with no endpoint and no file.
- **An LLM** (``[llm] url``) writes the ``TaskSpec`` (family, labels or entity types with definitions,
  edge cases), then the eval set from its own generation requests, then training data with hard
  negatives and boundary cases. Every request and answer is stored (``llm_calls``, role ``synth``).

Either way near-duplicates of eval examples are removed from training data, and every example keeps
its provenance (the teacher and the hash of the prompt that produced it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from adaptloop.data import curate
from adaptloop.data.llm import LLMClient, LLMError
from adaptloop.data.sources import load_for
from adaptloop.data.spans import locate
from adaptloop.data.spec import slug
from adaptloop.errors import AdaptloopError
from adaptloop.store.db import LLMCall
from adaptloop.workspace import Workspace

__all__ = ["Drafted", "draft_task", "PII_CUES"]

PII_CUES = ("pii", "personal data", "personally identifiable", "personal information", "sensitive data",
            "redact", "anonymi", "de-identif", "deidentif", "gdpr", "private data")
SYNTH_TRAIN, SYNTH_EVAL = 2000, 400  # offline sizes: the eval file gives the frozen eval set and dev, half each
LLM_EVAL_PER_LABEL, LLM_TRAIN_PER_LABEL, LLM_BATCH = 12, 36, 12


@dataclass(frozen=True)
class Drafted:
    """A drafted task: what it is, how its data was made, and the two files written."""

    family: str
    labels: tuple[str, ...]
    definitions: dict[str, str]
    edge_cases: tuple[str, ...]
    teacher: str
    train: Path
    eval: Path
    counts: dict[str, int] = field(default_factory=dict)


Confirm = Callable[[dict[str, Any]], bool]


def draft_task(ws: Workspace, prompt: str, *, llm: Any = None, confirm: Confirm = lambda _: True,
               on_progress: Callable[[str], None] = lambda _: None) -> Drafted:
    """Draft ``prompt``'s task, have it confirmed (``confirm`` sees family, labels, definitions, edge cases
    and the teacher, before any data is written), then write its data under the workspace.

    Raises:
        AdaptloopError: offline, and no library generates data for this prompt (one line: what to give);
            the draft was not accepted.
    """
    folder = ws.root / "synthetic" / f"{slug(prompt)}-{_hash(prompt)[:8]}"
    folder.mkdir(parents=True, exist_ok=True)
    client = llm or LLMClient.from_settings(ws.settings.llm)
    if client is not None:
        return _llm_draft(ws, client, prompt, folder, _checked(confirm, folder), on_progress)
    if any(c in prompt.lower() for c in PII_CUES):
        return _faker_pii(prompt, folder, _checked(confirm, folder), on_progress)
    raise AdaptloopError("`new` without --data needs a task it can write data for: give --data FILE (JSONL), "
                         "or set [llm] url in adaptloop.toml so an LLM drafts the task and its data "
                         "(offline it can draft PII detection only)")


def _checked(confirm: Confirm, folder: Path) -> Callable[[dict[str, Any]], None]:
    def check(draft: dict[str, Any]) -> None:
        if not confirm(draft):
            raise AdaptloopError("the drafted task was not accepted; nothing was written or trained; "
                                 "pass --data FILE to use your own data")
    return check


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def _decontaminate(train: Path, eval_: Path, records: list[dict[str, Any]]) -> int:
    """Drop training records that equal or nearly equal an eval record; rewrite the file. Returns the count."""
    family = "extraction" if records and "spans" in records[0] else "classification"
    pool, held = load_for(train, family=family).examples, load_for(eval_, family=family).examples
    drops = {d.index for d in curate.find_eval_overlap(pool, held)}
    by_line = {int(e.source.rsplit(":", 1)[1]): i for i, e in enumerate(pool)}
    kept = [r for line, r in enumerate(records, 1) if by_line.get(line) not in drops]
    _write(train, kept)
    return len(records) - len(kept)


def _faker_pii(prompt: str, folder: Path, check: Callable[[dict[str, Any]], None],
               on_progress: Callable[[str], None]) -> Drafted:
    from adaptloop.data import synth_pii

    teacher = "faker-templates (offline)"
    check({"family": "extraction", "labels": sorted(synth_pii.DEFINITIONS), "definitions": synth_pii.DEFINITIONS,
           "edge_cases": list(synth_pii.EDGE_CASES), "teacher": teacher})
    on_progress(f"writing {SYNTH_EVAL} eval examples, then {SYNTH_TRAIN} training examples, from Faker templates")
    train, eval_ = folder / "train.jsonl", folder / "eval.jsonl"
    _write(eval_, synth_pii.generate(SYNTH_EVAL, part="eval", prompt=prompt))  # the eval set first
    records = synth_pii.generate(SYNTH_TRAIN, part="train", prompt=prompt)
    _write(train, records)
    near = _decontaminate(train, eval_, records)
    return Drafted("extraction", tuple(sorted(synth_pii.DEFINITIONS)), dict(synth_pii.DEFINITIONS),
                   synth_pii.EDGE_CASES, teacher, train, eval_,
                   {"eval": SYNTH_EVAL, "train": len(records) - near, "near_duplicates_removed": near})


# -- the LLM drafter ------------------------------------------------------------------------------------------

class DraftSpec(BaseModel):
    family: Literal["classification", "extraction"]
    labels: list[str] = Field(min_length=1, max_length=60)
    definitions: dict[str, str]
    edge_cases: list[str] = Field(default_factory=list, max_length=12)


class Entity(BaseModel):
    text: str
    label: str


class Written(BaseModel):
    text: str = Field(min_length=1, max_length=2000)
    label: str = ""  # classification
    entities: list[Entity] = Field(default_factory=list)  # extraction


class Batch(BaseModel):
    examples: list[Written] = Field(max_length=50)


_SPEC_ASK = ("You design a text task for a small model. The user asked: {prompt!r}. Answer with JSON: "
             '{{"family": "classification" or "extraction", "labels": [label or entity type names, '
             'UPPER_SNAKE for entity types], "definitions": {{label: one sentence}}, "edge_cases": [short rules]}}.')
_WRITE_ASK = ("Task: {prompt}\nFamily: {family}. Labels and definitions: {defs}\nEdge cases: {edges}\n"
              "Write {n} new, varied, realistic inputs {what}. Answer with JSON: "
              '{{"examples": [{{"text": ..., {shape}}}]}}.')


def _llm_draft(ws: Workspace, client: Any, prompt: str, folder: Path, check: Callable[[dict[str, Any]], None],
               on_progress: Callable[[str], None]) -> Drafted:
    teacher = getattr(client, "model", "llm")

    def ask(messages: list[dict[str, str]], schema: type[BaseModel], fed: str) -> Any:
        try:
            reply = client.complete(messages, schema)
        except LLMError as exc:
            ws.store.add(LLMCall(role="synth", fed=fed, messages=messages, response=exc.text,
                                 outcome=f"rejected: {exc}", prompt_tokens=exc.prompt_tokens,
                                 completion_tokens=exc.completion_tokens))
            return None
        ws.store.add(LLMCall(role="synth", fed=fed, messages=reply.messages, response=reply.text, outcome="followed",
                             prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                             seconds=reply.seconds))
        return reply.parsed

    on_progress(f"asking {teacher} to draft the task")
    spec = ask([{"role": "user", "content": _SPEC_ASK.format(prompt=prompt)}], DraftSpec, "spec")
    if spec is None or len(spec.labels) < (1 if spec.family == "extraction" else 2):
        raise AdaptloopError(f"the LLM at {ws.settings.llm.url or 'the endpoint'} did not draft a usable task "
                             "(see `adaptloop runs` LLM usage); give --data FILE instead")
    labels = tuple(dict.fromkeys(spec.labels))
    extraction = spec.family == "extraction"
    check({"family": spec.family, "labels": list(labels), "definitions": spec.definitions,
           "edge_cases": spec.edge_cases, "teacher": teacher})
    defs = "; ".join(f"{k}: {spec.definitions.get(k, '')}" for k in labels)
    shape = '"entities": [{"text": exact substring, "label": type}]' if extraction else '"label": one of the labels'

    def write(part: str, what: str, label: str | None, n: int) -> list[dict[str, Any]]:
        content = _WRITE_ASK.format(prompt=prompt, family=spec.family, defs=defs, edges="; ".join(spec.edge_cases),
                                    n=n, what=what, shape=shape)
        batch = ask([{"role": "user", "content": content}], Batch, f"{part}:{label or 'boundary'}")
        out = []
        for w in batch.examples if batch else []:
            rec = _record(w, labels, extraction, label)
            if rec is not None:
                rec["provenance"] = {"teacher": teacher, "part": part, "prompt_hash": _hash(content)[:16]}
                out.append(rec)
        return out

    def part(name: str, per_label: int, hard: bool) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for label in labels:
            for start in range(0, per_label, LLM_BATCH):
                on_progress(f"{name}: {label} ({len(records)} so far)")
                what = (f"with at least one {label} entity" if extraction else f"whose label is {label}")
                records += write(name, what, label, min(LLM_BATCH, per_label - start))
        if hard:  # hard negatives and boundary cases, after the plain ones
            for label in labels:
                what = (f"that mention things easily mistaken for {label} but are not, or that sit at its boundary"
                        if extraction else f"that are near the boundary between {label} and another label")
                records += write(name, what, None, LLM_BATCH)
        return records

    train, eval_ = folder / "train.jsonl", folder / "eval.jsonl"
    held = part("eval", LLM_EVAL_PER_LABEL, hard=False)  # the eval set first
    if not held:
        raise AdaptloopError("the LLM wrote no usable eval example (each was malformed or off-task; see the "
                             "stored llm_calls); give --data FILE instead")
    _write(eval_, held)
    records = part("train", LLM_TRAIN_PER_LABEL, hard=True)
    _write(train, records)
    near = _decontaminate(train, eval_, records)
    return Drafted(spec.family, labels, {k: spec.definitions.get(k, "") for k in labels}, tuple(spec.edge_cases),
                   teacher, train, eval_, {"eval": len(held), "train": len(records) - near,
                                           "near_duplicates_removed": near})


def _record(w: Written, labels: tuple[str, ...], extraction: bool, asked: str | None) -> dict[str, Any] | None:
    """An LLM-written example as a data record; None when it does not fit the task (off-label, entity
    text not in the input)."""
    if not extraction:
        label = w.label if w.label in labels else None
        return {"text": w.text, "label": label} if label else None
    found = locate(w.text, [(e.text, e.label) for e in w.entities if e.label in labels])
    if found is None:
        return None  # an entity that is not in the text: the example cannot be trusted
    spans = [{"start": s, "end": e, "label": t} for s, e, t in found]
    if asked and not any(s["label"] == asked for s in spans):
        return None
    return {"text": w.text, "spans": spans}
