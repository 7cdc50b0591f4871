"""Generation metrics as pure functions over output and reference strings.

Every scorer returns the scored rows, not only the mean: diagnosis reads the rows.

- ``final_answer``: the number a math answer ends on (gsm8k's ``#### n``, else the last number).
- ``exact_match``: normalised final answers (numbers compared as numbers) or normalised text.
- ``rouge_l``: ROUGE-L F-measure (rouge-score), the best over a row's references.
- ``format_ok``: does an output parse as its task demands (a final number, one of the labels,
  a Python function that compiles, a single sentence).
- ``normalise_output``: an output put into its task's format when its content allows (the
  ``format-normalise`` intervention): a near-miss label snapped to the label, a final answer
  marked, the code fenced, a summary cut to its first sentence.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

_MARKED = re.compile(r"####\s*(.+)")
_BOXED = re.compile(r"\\boxed\{([^}]*)\}")
_STATED = re.compile(r"(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)\s*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\$?\s?\d[\d,]*(?:\.\d+)?")
_SPACE = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
_CODE_FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", re.DOTALL)


def _number(text: str) -> str | None:
    """The last number in ``text``, canonical (no $, commas or trailing zeros), or None."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    raw = found[-1].replace("$", "").replace(",", "").replace(" ", "")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        return None
    value = value.normalize()
    return format(value, "f") if value != value.to_integral() else str(int(value))


def final_answer(text: str) -> str | None:
    """The final numeric answer of a worked solution, canonical, or None when there is none.

    Looks, in order, for gsm8k's ``#### n``, a LaTeX ``\\boxed{n}``, "the answer is n", and
    finally the last number anywhere in the text.
    """
    for pattern in (_MARKED, _BOXED, _STATED):
        m = pattern.search(text)
        if m:
            found = _number(m.group(1))
            if found is not None:
                return found
    return _number(text)


def normalise_text(text: str) -> str:
    """Lower case, single spaces, no surrounding punctuation or quotes."""
    return _SPACE.sub(" ", text).strip().strip("\"'`.!").strip().lower()


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


def extract_code(text: str) -> str:
    """The Python code in a completion: the first fenced block when there is one, else all of it."""
    m = _CODE_FENCE.search(text)
    return (m.group(1) if m else text).strip("\n")


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


def normalise_output(output: str, kind: str, *, labels: Sequence[str] = (), cutoff: float = 0.75) -> str:
    """``output`` in the format its task kind demands, when its content allows; else unchanged.

    Kinds: ``label`` (the first line, when it is a label up to case and punctuation, contains
    exactly one label's name, or is a near-miss of one label by ``difflib`` ratio >= ``cutoff``),
    ``math`` (cut after the first ``#### n`` line; else ``#### n`` appended for the last number),
    ``code`` (the extracted code in one fence), ``summary`` (the first sentence, one line),
    ``text`` (unchanged). Never invents content: an output without a label, number or code
    stays as it is.
    """
    text = output.strip()
    if kind == "label" and labels:
        by_norm = {normalise_text(x): x for x in labels}
        first = normalise_text(text.splitlines()[0]) if text else ""
        if first in by_norm:
            return by_norm[first]
        spaced = {k.replace("_", " "): v for k, v in by_norm.items()}
        if first in spaced:
            return spaced[first]
        inside = [v for k, v in by_norm.items() if re.search(rf"(?<![\w]){re.escape(k)}(?![\w])", text.lower())]
        if len(inside) == 1:
            return inside[0]
        close = difflib.get_close_matches(first, list(by_norm), n=1, cutoff=cutoff)
        return by_norm[close[0]] if close else output
    if kind == "math":
        m = _MARKED.search(text)
        if m:
            return text[:m.end()].rstrip()
        found = final_answer(text)
        return f"{text}\n#### {found}" if found is not None else output
    if kind == "code":
        code = extract_code(text)
        return f"```python\n{code}\n```" if code.strip() else output
    if kind == "summary":
        one = " ".join(text.split())
        return _SENTENCE_END.split(one, maxsplit=1)[0] if one else output
    return output


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
