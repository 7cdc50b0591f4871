"""The LLM judge: production traces that no person labelled get a verdict, a corrected label or
entities, and a short rationale, from the LLM at ``[llm] url``.

The judge is a feedback source like any other (``llm-judge:<model>``): its answers are stored as
feedback events, go through the same triage (bursts, label noise, drift), and never outrank gold
feedback — it judges only traces with none, and a person's later feedback replaces its answer. A
trace only the judge labelled trains with weight ``[llm] judge_trust`` and never enters an eval set,
so the gate is decided by people's labels alone. Every request and answer is stored (``llm_calls``,
role ``judge``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, Field

from adaptloop.agent.traffic import carried_example, learnable
from adaptloop.data.llm import LLMError
from adaptloop.data.spans import locate
from adaptloop.store.db import LLMCall, TraceRow
from adaptloop.types import CarriedTrace, Example, TaskSpec, Verdict
from adaptloop.workspace import Workspace

__all__ = ["JUDGE_SOURCE", "judge_unlabelled", "judged", "trusted_examples"]

JUDGE_SOURCE = "llm-judge"


class _Entity(BaseModel):
    text: str
    label: str


class JudgeAnswer(BaseModel):
    verdict: Literal["correct", "wrong", "unsure"]
    label: str | None = None
    entities: list[_Entity] = Field(default_factory=list)
    rationale: str = Field("", max_length=600)


_ASK = ("You check a model's answer for the task: {prompt}\n{task}\nInput: {input}\nThe model answered: {output}\n"
        "Is the model right? Answer with JSON: {{\"verdict\": \"correct\" | \"wrong\" | \"unsure\", {fix}"
        "\"rationale\": one sentence}}.")


def judged(source: str | None) -> bool:
    """True when the feedback came from the LLM judge."""
    return bool(source) and str(source).startswith(JUDGE_SOURCE)


def trusted_examples(spec: TaskSpec, verdicts: Sequence[Verdict], views: Sequence[Any],
                     carried: Sequence[CarriedTrace] = (), *, weight: float) -> tuple[list[Example], list[Example]]:
    """Trusted traces (``ok`` / ``fixable`` with a label) of this cycle and carried from earlier ones, as
    training examples: (those people labelled, those only the judge labelled, at training weight ``weight``)."""
    people: list[Example] = []
    by_llm: list[Example] = []
    for v, view in zip(verdicts, views):
        if v.triage in ("ok", "fixable") and v.label:
            e = learnable(v, view.text)
            (by_llm.append(replace(e, weight=weight)) if judged(view.source) else people.append(e))
    for c in carried:
        if c.spans is not None if spec.family == "extraction" else c.label in spec.labels:
            e = carried_example(spec, c)
            (by_llm.append(replace(e, weight=weight)) if judged(c.source) else people.append(e))
    return people, by_llm


def judge_unlabelled(ws: Workspace, client: Any, spec: TaskSpec, rows: list[TraceRow], *,
                     run_id: int | None = None) -> dict[str, int]:
    """Ask the judge about up to ``[llm] judge_max`` of ``rows`` that carry no feedback; store each
    answer as feedback from ``llm-judge:<model>``. Returns counts by outcome."""
    cfg = ws.settings.llm
    extraction = spec.family == "extraction"
    answer = "entities" if extraction else "label"
    todo = [r for r in rows if r.feedback_label is None and r.feedback_verdict is None and r.feedback_spans is None
            and (r.output or {}).get(answer) is not None]
    source = f"{JUDGE_SOURCE}:{getattr(client, 'model', 'llm')}"
    task = (f"Entity types: {_described(spec)}" if extraction else f"Labels: {_described(spec)}")
    fix = ('"entities": [{"text": exact substring, "label": type}] (all entities in the input, when wrong), '
           if extraction else '"label": the right label (when wrong), ')
    counts: Counter[str] = Counter()
    spent, feedback = 0, []
    for r in todo[:cfg.judge_max]:
        if cfg.max_tokens_per_run and spent >= cfg.max_tokens_per_run:
            counts["token budget spent"] += 1
            continue
        output = json.dumps((r.output or {}).get("entities") if extraction else (r.output or {}).get("label"))
        messages = [{"role": "user", "content": _ASK.format(prompt=spec.prompt, task=task, input=r.input,
                                                             output=output, fix=fix)}]
        try:
            reply = client.complete(messages, JudgeAnswer)
        except LLMError as exc:
            spent += exc.prompt_tokens + exc.completion_tokens
            ws.store.add(LLMCall(run_id=run_id, role="judge", fed=r.id, messages=messages, response=exc.text,
                                 outcome=f"rejected: {exc}", prompt_tokens=exc.prompt_tokens,
                                 completion_tokens=exc.completion_tokens))
            counts["rejected"] += 1
            continue
        spent += reply.prompt_tokens + reply.completion_tokens
        item, outcome = _as_feedback(reply.parsed, r, spec, source)
        ws.store.add(LLMCall(run_id=run_id, role="judge", fed=r.id, messages=reply.messages, response=reply.text,
                             outcome=outcome, prompt_tokens=reply.prompt_tokens,
                             completion_tokens=reply.completion_tokens, seconds=reply.seconds))
        counts[outcome.split(":")[0]] += 1
        if item is not None:
            feedback.append(item)
    ws.store.set_feedback(feedback)
    return dict(counts)


def _described(spec: TaskSpec) -> str:
    return "; ".join(f"{k}: {spec.definitions[k]}" if k in spec.definitions else k for k in spec.labels)


def _as_feedback(a: JudgeAnswer, row: TraceRow, spec: TaskSpec, source: str) -> tuple[tuple | None, str]:
    """The judge's answer as a feedback item ``(trace id, label, verdict, source, spans)``, and the outcome."""
    if a.verdict == "unsure":
        return None, "unsure"
    if a.verdict == "correct":
        return (row.id, None, "correct", source, None), "followed"
    if spec.family == "extraction":
        spans = locate(row.input, [(e.text, e.label) for e in a.entities if e.label in spec.labels])
        if spans is None:
            return (row.id, None, "wrong", source, None), "followed: wrong, entities not in the input"
        return (row.id, None, "wrong", source, [list(s) for s in spans]), "followed"
    if a.label in spec.labels and a.label != (row.output or {}).get("label"):
        return (row.id, a.label, "wrong", source, None), "followed"
    return (row.id, None, "wrong", source, None), "followed: wrong, no usable label"
