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
