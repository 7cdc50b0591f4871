"""Generation data and the sandbox on the public generation sets: the mbpp and humaneval references pass
the sandbox, and the output kind is inferred from the data."""

from __future__ import annotations

import pytest

from adaptloop.data.generation import code_tests, infer_kind, load_generation
from adaptloop.evaluate.sandbox import SandboxConfig, pass_at_1
from tests.conftest import DATASETS, read_rows

pytestmark = pytest.mark.integration

FAST = SandboxConfig(timeout=5, cpu_seconds=3, workers=2)


def test_sandbox_passes_the_reference_solutions():
    """A sample of mbpp and humaneval references pass (benchmarks/sandbox_references.py runs all)."""
    mbpp = read_rows("mbpp", "test")[:12]
    human = read_rows("humaneval", "test")[:8]
    codes = [r["code"] for r in mbpp] + [r["prompt"] + r["canonical_solution"] for r in human]
    tests = ["\n".join([r["test_setup_code"], *r["test_list"]]) for r in mbpp] + \
        [f"{r['test']}\n\ncheck({r['entry_point']})" for r in human]
    result = pass_at_1(codes, tests, FAST)
    assert result["pass_at_1"] == 1.0, [r for r in result["rows"] if not r["passed"]]


def test_infer_kind_on_the_public_sets():
    def kind(name, split, n=200):
        return infer_kind(load_generation(DATASETS / name / f"{split}.jsonl").samples[:n])

    assert kind("gsm8k", "test") == "math"
    assert kind("mbpp", "test") == "code"
    assert kind("humaneval", "test") == "code"
    assert kind("scitldr", "test") == "summary"
    assert kind("banking77", "test", 1000) == "label"
    mb = load_generation(DATASETS / "mbpp" / "test.jsonl").samples[0]
    assert "assert" in code_tests(mb)
