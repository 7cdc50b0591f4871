"""Why generated outputs fail: format vs content, truncation, repetition, extraction, length drift.

``score_outputs`` turns outputs into scored rows (one per sample) for a task kind; ``diagnose``
reads the rows and returns findings, each with a summary, a severity in [0, 1] (the share of
dev rows it explains), evidence, and the interventions it suggests. Pure functions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from adaptloop.data.generation import Sample, code_tests
from adaptloop.data.outputs import extract_code, final_answer
from adaptloop.evaluate.generation import exact_match, format_ok, rouge_l
from adaptloop.types import Finding

METRIC = {"math": "exact_match", "label": "exact_match", "code": "pass_at_1", "summary": "rouge_l",
          "text": "rouge_l"}
FORMAT = {"math": "number", "label": "label", "code": "code", "summary": "sentence", "text": "text"}


def program_for(sample: Sample, output: str) -> str:
    """The code to test: the completion's code, after the prompt's signature when it only
    continues it (humaneval's prompts end inside the function)."""
    code = extract_code(output)
    entry = sample.extra.get("entry_point")
    if entry and f"def {entry}" not in code:
        return sample.prompt + code
    return code


def score_outputs(kind: str, samples: Sequence[Sample], outputs: Sequence[str], *, labels: Sequence[str] = (),
                  n_tokens: Sequence[int] = (), max_new_tokens: int = 0, sandbox=None) -> dict[str, Any]:
    """Metric and per-row details for one kind.

    Args:
        kind: ``math``, ``code``, ``summary``, ``label`` or ``text``.
        samples: the inputs with their references, length n.
        outputs: the model's completions, length n.
        labels: the closed answer set (``label``).
        n_tokens: tokens generated per output (truncation is ``n_tokens >= max_new_tokens``).
        sandbox: a ``SandboxConfig`` for ``code``.

    Returns:
        ``{"n", <metric>, "format_ok", "rows": [{"id", "output", "correct" | "score", "format_ok",
        "truncated", "repetitive", "out_len", "ref_len"}]}``.
    """
    if kind not in METRIC:
        raise ValueError(f"unknown generation kind {kind!r}; use one of {', '.join(METRIC)}")
    refs = [s.target for s in samples]
    if kind in ("math", "label"):
        scored = exact_match(outputs, refs, numeric=kind == "math")
        per = [float(r["correct"]) for r in scored["rows"]]
    elif kind == "code":
        from adaptloop.evaluate.sandbox import SandboxConfig, pass_at_1

        scored = pass_at_1([program_for(s, o) for s, o in zip(samples, outputs)], [code_tests(s) for s in samples],
                           sandbox or SandboxConfig())
        per = [float(r["passed"]) for r in scored["rows"]]
    else:
        scored = rouge_l(outputs, [s.extra.get("references") or s.target for s in samples])
        per = list(scored["rows"])
    rows = []
    for i, (s, o) in enumerate(zip(samples, outputs)):
        rows.append({"id": s.id, "output": o, "score": per[i], "correct": per[i] >= 1.0,
                     "format_ok": format_ok(o, FORMAT[kind], labels=labels) if (kind != "label" or labels) else True,
                     "truncated": bool(max_new_tokens and n_tokens and n_tokens[i] >= max_new_tokens),
                     "repetitive": repetitive(o), "out_len": len(o.split()), "ref_len": len(s.target.split()),
                     **({"pred": final_answer(o), "gold": final_answer(s.target)} if kind == "math" else {})})
    metric = METRIC[kind]
    return {"n": len(rows), metric: sum(per) / len(per) if per else 0.0,
            "format_ok": sum(r["format_ok"] for r in rows) / len(rows) if rows else 0.0, "rows": rows}


def repetitive(text: str, n: int = 4, share: float = 0.5) -> bool:
    """A repetition loop: at least ``share`` of the word n-grams are repeats (and 3+ repeats)."""
    words = text.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if len(grams) < 6:
        return False
    counts = Counter(grams)
    repeats = sum(c - 1 for c in counts.values())
    return repeats >= 3 and repeats / len(grams) >= share


def diagnose(kind: str, scored: dict[str, Any]) -> list[Finding]:
    """Findings for one model's scored dev rows, most severe first.

    Kinds of finding: ``format_errors`` (outputs that do not parse as the task demands),
    ``wrong_content`` (well-formed but wrong), ``truncation`` (stopped at the token limit),
    ``repetition`` (loops), ``extraction_failure`` (math: no final number to read),
    ``length_drift`` (outputs much longer or shorter than the references).
    """
    rows = scored["rows"]
    n = len(rows)
    if not n:
        return []
    wrong = [r for r in rows if not r["correct"]]
    out: list[Finding] = []

    def add(kind_: str, hits: list[dict], summary: str, suggests: list[str]) -> None:
        if hits:
            out.append(Finding(kind=kind_, summary=summary, severity=round(len(hits) / n, 4),
                               evidence={"count": len(hits), "n": n, "examples": [
                                   {"id": r["id"], "output": r["output"][:300]} for r in hits[:3]]},
                               suggests=tuple(suggests)))

    fmt = [r for r in wrong if not r["format_ok"]]
    add("format_errors", fmt, f"{len(fmt)} of {n} outputs do not parse as {FORMAT[kind]} output",
        ["sft", "format-normalise", "prompt-template"])
    content = [r for r in wrong if r["format_ok"]]
    add("wrong_content", content, f"{len(content)} of {n} outputs are well-formed but wrong",
        ["cot", "more-epochs", "larger-model"] if kind == "math" else ["more-epochs", "lora", "larger-model"])
    trunc = [r for r in rows if r["truncated"]]
    add("truncation", trunc, f"{len(trunc)} of {n} outputs stopped at the token limit",
        ["more-tokens", "format-normalise"])
    loops = [r for r in rows if r["repetitive"]]
    add("repetition", loops, f"{len(loops)} of {n} outputs repeat themselves", ["sft", "decoding"])
    if kind == "math":
        missing = [r for r in rows if r.get("pred") is None]
        add("extraction_failure", missing, f"{len(missing)} of {n} outputs have no final number to read",
            ["format-normalise"])
    ratio = sum(r["out_len"] for r in rows) / max(1, sum(r["ref_len"] for r in rows))
    if ratio > 2.0 or ratio < 0.5:
        drift = [r for r in rows if r["ref_len"] and not 0.5 <= r["out_len"] / r["ref_len"] <= 2.0]
        add("length_drift", drift, f"outputs are {ratio:.1f}× the references' length in words",
            ["sft", "format-normalise"])
    return sorted(out, key=lambda f: -f.severity)
