"""Diagnosis of generation outputs: scored, then named (format errors, wrong content, truncation,
repetition, extraction failures, length drift)."""

from __future__ import annotations

import pytest

from adaptloop.data.generation import Sample
from adaptloop.diagnose.generation import diagnose, repetitive, score_outputs


def test_score_and_diagnose_math_outputs():
    samples = [Sample(prompt=f"q{i}", target=f"...\n#### {i}") for i in range(4)]
    outputs = ["so #### 0", "The result is 5", "I am not sure", "word " * 40]
    scored = score_outputs("math", samples, outputs, n_tokens=[3, 4, 4, 64], max_new_tokens=64)
    assert scored["exact_match"] == 0.25 and scored["format_ok"] == 0.5
    kinds = {f.kind: f for f in diagnose("math", scored)}
    assert kinds["format_errors"].evidence["count"] == 2
    assert kinds["wrong_content"].evidence["count"] == 1
    assert kinds["truncation"].evidence["count"] == 1 and kinds["repetition"].evidence["count"] == 1
    assert kinds["extraction_failure"].evidence["count"] == 2
    assert "length_drift" in kinds
    assert repetitive("a b c d " * 5) and not repetitive("one two three four five six seven eight nine ten")
    with pytest.raises(ValueError, match="unknown generation kind"):
        score_outputs("poetry", samples, outputs)
