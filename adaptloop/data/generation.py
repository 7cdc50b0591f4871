"""Generation data: prompt → completion records, and what kind of output a task expects.

Accepted lines (one JSON object each):

- ``{"prompt" | "question" | "text" | "input", "answer" | "target" | "summary" | "output" | "code"
  | "canonical_solution"}``;
- ``{"messages": [{"role", "content"}, ...]}`` whose last message is the assistant's answer;
- classification data read as generation (``{"text", "label"}``: reply with the label).

Extra fields a metric needs travel with the sample: ``test_list`` / ``test_setup_code`` (mbpp),
``test`` / ``entry_point`` (humaneval), ``references`` (several gold summaries). A line with no
usable prompt or target is quarantined with its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from adaptloop.data.sources import Quarantined, _pick, _records
from adaptloop.errors import DataError
from adaptloop.types import Sample

PROMPT_FIELDS = ("prompt", "question", "text", "input", "instruction")
TARGET_FIELDS = ("answer", "target", "summary", "output", "completion", "code", "canonical_solution", "label")
EXTRA_FIELDS = ("test_list", "test_setup_code", "test", "entry_point", "references", "task_id", "title")
ROLES = ("system", "user", "assistant")
__all__ = ["Sample", "LoadedSamples", "load_generation", "infer_kind"]
KINDS = ("math", "code", "summary", "label", "text")


@dataclass(frozen=True)
class LoadedSamples:
    samples: tuple[Sample, ...]
    quarantined: tuple[Quarantined, ...] = ()
    source: str = ""
    family: str = "generation"


def _from_messages(msgs: object) -> tuple[tuple[tuple[str, str], ...], str, str]:
    if not isinstance(msgs, list) or len(msgs) < 2:
        raise DataError("'messages' must be a list of at least a user and an assistant turn")
    turns = []
    for m in msgs:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise DataError(f"each message needs a role ({', '.join(ROLES)}) and string content")
        turns.append((m["role"], m["content"]))
    if turns[-1][0] != "assistant" or turns[-2][0] != "user":
        raise DataError("'messages' must end with a user turn and then the assistant's answer")
    return tuple(turns[:-2]), turns[-2][1], turns[-1][1]


def load_generation(path: str | Path) -> LoadedSamples:
    """Read prompt → completion samples; bad lines are quarantined with the reason.

    Raises:
        DataError: the file is unusable as a whole (missing, not UTF-8, no usable line).
    """
    p = Path(path)
    good, bad, keys = _records(p)
    out: list[Sample] = []
    for i, line, obj in good:
        try:
            if "messages" in obj:
                context, prompt, target = _from_messages(obj["messages"])
            else:
                prompt, target, context = _pick(obj, PROMPT_FIELDS), _pick(obj, TARGET_FIELDS), ()
                if not isinstance(prompt, str) or not prompt.strip():
                    raise DataError(f"missing or empty prompt (one of {', '.join(PROMPT_FIELDS)})")
                if isinstance(target, (int, float)) and not isinstance(target, bool):
                    target = str(target)
                if not isinstance(target, str) or not target.strip():
                    raise DataError(f"missing or empty target (one of {', '.join(TARGET_FIELDS)})")
        except DataError as exc:
            bad.append(Quarantined(i, line, str(exc)))
            continue
        extra = {k: obj[k] for k in EXTRA_FIELDS if k in obj}
        out.append(Sample(prompt=prompt, target=target, context=context, extra=extra, source=f"{p.name}:{i}"))
    if not out:
        first = bad[0].reason if bad else "no records"
        raise DataError(f"no usable generation records in {p} ({len(bad)} lines rejected, first: {first}; "
                        f"fields seen: {', '.join(sorted(keys)) or 'none'}); each line needs a prompt "
                        "('prompt', 'question' or 'text') and a target ('answer', 'target' or 'summary'), "
                        "or chat 'messages'")
    return LoadedSamples(tuple(out), tuple(sorted(bad, key=lambda q: q.line_no)), str(p))


def infer_kind(samples: Sequence[Sample], *, max_labels: int = 200) -> str:
    """What the outputs are, from the data: ``math`` (targets end in ``#### n``), ``code`` (tests
    come with the samples), ``summary`` (prompts much longer than one-line targets), ``label``
    (a small closed set of short targets), else ``text``."""
    if not samples:
        raise DataError("no samples to infer the output kind from")
    n = len(samples)
    if sum("####" in s.target for s in samples) >= 0.8 * n:
        return "math"
    if sum(bool({"test_list", "test"} & set(s.extra)) for s in samples) >= 0.8 * n:
        return "code"
    targets = {s.target.strip() for s in samples}
    if len(targets) <= min(max_labels, max(2, n // 3)) and all(len(t.split()) <= 6 for t in targets):
        return "label"
    long_in = sum(len(s.prompt) >= 4 * len(s.target) and "\n" not in s.target.strip() for s in samples)
    if long_in >= 0.8 * n:
        return "summary"
    return "text"


def code_tests(sample: Sample) -> str:
    """The test block a code sample's completion must pass (mbpp asserts or humaneval's check)."""
    x = sample.extra
    if "test_list" in x:
        return "\n".join([x.get("test_setup_code") or "", *x["test_list"]])
    if "test" in x and "entry_point" in x:
        return f"{x['test']}\n\ncheck({x['entry_point']})"
    raise DataError(f"sample {sample.source or sample.id} has no tests ('test_list' or 'test' + 'entry_point')")
