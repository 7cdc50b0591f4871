"""How a generation task's samples are shown to a causal LM, and what it is trained to answer.

``present`` puts the task's instruction before the input and shapes the target by the data
recipe (a worked solution, the answer only, fenced code); training, evaluation, ``predict`` and
``serve`` all show a model its inputs through it, so it sees at serving time what it saw in
training.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from adaptloop.data.generation import Sample

INSTRUCTIONS = {
    "math": "Solve the problem step by step. End with a last line of the form '#### <number>'.",
    "code": "Write a Python function that solves the task. Reply with the code only.",
    "summary": "Summarize the text in one sentence.",
    "label": "Reply with the label only.",
    "text": "",
}
_CALC = re.compile(r"<<[^>]*>>")
_FINAL = re.compile(r"####\s*(.+)\s*$")


def cot_target(answer: str) -> str:
    """A worked solution as a training target: calculator marks removed, ``#### n`` on the last line."""
    text = _CALC.sub("", answer).strip()
    m = _FINAL.search(text)
    if not m:
        return text
    body = text[:m.start()].rstrip()
    return f"{body}\n#### {m.group(1).strip()}" if body else f"#### {m.group(1).strip()}"


def answer_target(answer: str) -> str:
    """Only the final answer (``#### n``): the no-rationale recipe."""
    m = _FINAL.search(answer.strip())
    return f"#### {m.group(1).strip()}" if m else answer.strip()


def instruction(kind: str, labels: Sequence[str], style: str) -> str:
    if kind == "label" and style == "full" and labels:
        return f"Reply with exactly one of these labels and nothing else: {', '.join(labels)}."
    return INSTRUCTIONS[kind]


def present(sample: Sample, kind: str, text: str, recipe: str = "raw") -> Sample:
    """The sample as the model sees it: the instruction before the input, the recipe's target."""
    prompt = sample.prompt
    if kind == "code" and sample.extra.get("test_list"):
        prompt = f"{prompt}\nYour code should pass this test:\n{sample.extra['test_list'][0]}"
    if text:
        prompt = f"{text}\n\n{prompt}"
    target = sample.target
    if kind == "math":
        target = cot_target(target) if recipe == "cot" else answer_target(target) if recipe == "answer" else target
    if kind == "code" and "```" not in target:
        target = f"```python\n{target.strip()}\n```"
    return replace(sample, prompt=prompt, target=target)
