"""From the user's prompt and data to an explicit TaskSpec."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from adaptloop.errors import LabelError
from adaptloop.types import Example, TaskSpec

OUT_OF_SCOPE_NAMES = ("oos", "out_of_scope", "out-of-scope", "none_of_the_above")


def slug(prompt: str, max_words: int = 6) -> str:
    words = re.findall(r"[a-z0-9]+", prompt.lower())
    stop = {"a", "an", "the", "me", "to", "build", "make", "model", "for", "of", "my", "please"}
    kept = [w for w in words if w not in stop][:max_words]
    return "-".join(kept) or "task"


def infer_spec(prompt: str, examples: Sequence[Example], *, source: str = "") -> TaskSpec:
    """A classification TaskSpec: labels from the data, metric accuracy (+ macro-F1).

    Text + label data decides the family; a label named like ``oos`` marks out-of-scope.

    Raises:
        LabelError: fewer than two classes.
    """
    counts = Counter(e.label for e in examples)
    if len(counts) < 2:
        only = next(iter(counts), "?")
        raise LabelError(
            f"{source or 'the data'} has only one class ('{only}'); classification needs at least "
            "two labels — add examples of the other classes"
        )
    labels = tuple(sorted(counts))
    oos = next((lab for lab in labels if lab.lower() in OUT_OF_SCOPE_NAMES), None)
    secondary = ("macro_f1", "in_scope_accuracy", "oos_recall") if oos else ("macro_f1",)
    return TaskSpec(name=slug(prompt), prompt=prompt, family="classification", labels=labels,
                    primary_metric="accuracy", secondary_metrics=secondary,
                    out_of_scope_label=oos)


_EXTRACTION_CUES = ("extract", "pii", "personal data", "personally identifiable", "entity", "entities", " ner",
                    "ner ", "named entit", "redact", "anonymi", "mask ", "masking", "spans", "tagging",
                    "recogni", " names", "pii detection")
_GENERATION_CUES = ("generat", "summar", "math", "word problem", "reasoning", "solve", "write code", "code gen",
                    "python function", "reply with", "respond with", "answer question", "tldr", "chat")
_REPLY_CUES = ("reply with", "respond with", "answer with", "write the answer")
_CLASSIFICATION_CUES = ("classif", "intent", "categor", "route", "routing", "sentiment", "topic", "triage",
                        "spam", "label each", "which class")


def family_from_prompt(prompt: str) -> str | None:
    """``extraction``, ``classification`` or ``generation`` when the prompt says which, else None."""
    p = f" {prompt.lower()} "
    if any(c in p for c in _REPLY_CUES):  # the user describes a written reply: generation wins
        return "generation"
    votes = {"extraction": sum(c in p for c in _EXTRACTION_CUES),
             "classification": sum(c in p for c in _CLASSIFICATION_CUES),
             "generation": sum(c in p for c in _GENERATION_CUES)}
    best = max(votes.values())
    winners = [f for f, v in votes.items() if v == best]
    return winners[0] if best and len(winners) == 1 else None


def choose_family(prompt: str, available: set[str], source: str = "the data") -> str:
    """The task family: the data's when only one fits, the prompt's when the data allows both.

    Raises:
        DataError: the prompt asks for a family the data cannot feed, or the data fits none.
    """
    from adaptloop.errors import DataError

    asked = family_from_prompt(prompt)
    if not available:
        raise DataError(f"{source} has neither text + label records (classification) nor text + spans / "
                        "tokens + tags records (extraction)")
    if asked == "generation" and "classification" in available:
        available = available | {"generation"}  # text + label read as "reply with the label"
    if asked and asked not in available:
        need = {"extraction": "'spans' (character offsets) or 'tokens' + 'tags'",
                "generation": "a prompt ('prompt', 'question' or 'text') and a target ('answer', 'target' or "
                              "'summary'), or chat 'messages'"}.get(asked, "a 'label' per text")
        raise DataError(f"the prompt asks for {asked}, but {source} has only {', '.join(sorted(available))} "
                        f"records; {asked} needs {need}")
    if len(available) == 1:
        return next(iter(available))
    if asked:
        return asked
    return "classification" if "classification" in available else sorted(available)[0]


def infer_extraction_spec(prompt: str, examples: Sequence[Example], *, source: str = "") -> TaskSpec:
    """An extraction TaskSpec: entity types from the data, metric entity micro-F1 (seqeval).

    Raises:
        LabelError: the data has no entity at all.
    """
    types = sorted({s[2] for e in examples for s in e.spans})
    if not types:
        raise LabelError(f"{source or 'the data'} has no entity annotations; extraction needs spans or "
                         "B-/I- tags on at least some examples")
    return TaskSpec(name=slug(prompt), prompt=prompt, family="extraction", labels=tuple(types),
                    primary_metric="f1", secondary_metrics=("precision", "recall", "macro_f1"))
