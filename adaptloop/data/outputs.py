"""What a generated text says: its final answer, its code, its label — parsed and normalised.

Pure string functions shared by the teacher (which checks its own rationales), the causal
backend (which normalises what it decodes) and the generation metrics in ``evaluate``.

- ``final_answer``: the number a math answer ends on (gsm8k's ``#### n``, else the last number).
- ``normalise_text``: lower case, single spaces, no surrounding punctuation.
- ``extract_code``: the first fenced Python block, else the whole text.
- ``normalise_output``: an output put into its task's format when its content allows (the
  ``format-normalise`` intervention): a near-miss label snapped to the label, a final answer
  marked, the code fenced, a summary cut to its first sentence.
"""

from __future__ import annotations

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


def extract_code(text: str) -> str:
    """The Python code in a completion: the first fenced block when there is one, else all of it."""
    m = _CODE_FENCE.search(text)
    return (m.group(1) if m else text).strip("\n")


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
