"""Generation metrics as pure functions over output and reference strings.

Every scorer returns the scored rows, not only the mean: diagnosis reads the rows.

- ``final_answer``: the number a math answer ends on (gsm8k's ``#### n``, else the last number).
- ``exact_match``: normalised final answers (numbers compared as numbers) or normalised text.
- ``rouge_l``: ROUGE-L F-measure (rouge-score), the best over a row's references.
- ``format_ok``: does an output parse as its task demands (a final number, one of the labels,
  a Python function that compiles, a single sentence).
- parsing and normalising outputs (``final_answer``, ``normalise_output``...) lives in
  ``data.outputs`` and is re-exported here.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

from adaptloop.data.outputs import extract_code, final_answer, normalise_text


def exact_match(outputs: Sequence[str], references: Sequence[str], *, numeric: bool) -> dict:
    """Exact match of final answers (``numeric``) or of normalised text.

    Args:
        outputs: model outputs, length n.
        references: gold answers, length n (a gsm8k answer with its rationale is fine: its
            ``#### n`` is what counts).
        numeric: compare ``final_answer`` of both; otherwise ``normalise_text``.

    Returns:
        ``{"n", "exact_match", "rows": [{"pred", "gold", "correct"}]}``.
    """
    _same_length(outputs, references)
    pick = final_answer if numeric else normalise_text
    rows = []
    for out, ref in zip(outputs, references):
        pred, gold = pick(out), pick(ref)
        rows.append({"pred": pred, "gold": gold, "correct": pred is not None and pred == gold})
    return {"n": len(rows), "exact_match": _mean(r["correct"] for r in rows), "rows": rows}


def rouge_l(outputs: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict:
    """ROUGE-L F-measure (stemmed), the best over each row's references.

    Returns:
        ``{"n", "rouge_l", "rows": [float]}``.
    """
    from rouge_score import rouge_scorer

    _same_length(outputs, references)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rows = []
    for out, refs in zip(outputs, references):
        refs = [refs] if isinstance(refs, str) else list(refs)
        rows.append(max((scorer.score(r, out)["rougeL"].fmeasure for r in refs), default=0.0))
    return {"n": len(rows), "rouge_l": _mean(rows), "rows": rows}


def format_ok(output: str, kind: str, *, labels: Sequence[str] = ()) -> bool:
    """Whether ``output`` parses as ``kind`` demands.

    Kinds: ``number`` (a final numeric answer can be read), ``label`` (the output is exactly
    one of ``labels`` after normalisation), ``code`` (the extracted code compiles and defines a
    function), ``sentence`` (non-empty, one line), ``text`` (non-empty).

    Raises:
        ValueError: an unknown kind, or ``label`` without labels.
    """
    if kind == "number":
        return final_answer(output) is not None
    if kind == "label":
        if not labels:
            raise ValueError("format 'label' needs the label set")
        return normalise_text(output) in {normalise_text(x) for x in labels}
    if kind == "code":
        try:
            tree = ast.parse(extract_code(output))
        except (SyntaxError, ValueError):
            return False
        return any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) for n in ast.walk(tree))
    if kind == "sentence":
        return bool(output.strip()) and "\n" not in output.strip()
    if kind == "text":
        return bool(output.strip())
    raise ValueError(f"unknown output format {kind!r}; use number, label, code, sentence or text")


def format_compliance(outputs: Sequence[str], kind: str, *, labels: Sequence[str] = ()) -> dict:
    """Share of outputs that parse as ``kind`` demands: ``{"n", "format_ok", "rows": [bool]}``."""
    rows = [format_ok(o, kind, labels=labels) for o in outputs]
    return {"n": len(rows), "format_ok": _mean(rows), "rows": rows}


def _same_length(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} outputs but {len(b)} references")


def _mean(values) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values) if values else 0.0
