"""Generation metrics and the code sandbox (no model). (Answers, code and the output format read from
model outputs, and generation data loading: tests/unit/data/test_generation.py.)"""

from __future__ import annotations

import pytest

from adaptloop.evaluate.generation import exact_match, format_compliance, format_ok, rouge_l
from adaptloop.evaluate.sandbox import SandboxConfig, program, run_program


def test_exact_match_numeric_and_text():
    r = exact_match(["... so 72 clips", "The answer is 9", "I don't know"],
                    ["step\n#### 72", "#### 10", "#### 3"], numeric=True)
    assert r["exact_match"] == pytest.approx(1 / 3)
    assert [row["correct"] for row in r["rows"]] == [True, False, False]
    assert r["rows"][2]["pred"] is None
    t = exact_match(["Card_Arrival.", " lost_or_stolen_card"], ["card_arrival", "card_arrival"], numeric=False)
    assert [row["correct"] for row in t["rows"]] == [True, False]
    with pytest.raises(ValueError, match="2 outputs but 1 references"):
        exact_match(["a", "b"], ["a"], numeric=False)


def test_rouge_l_best_reference_and_rows():
    r = rouge_l(["the cat sat on the mat", "completely unrelated"],
                [["a dog ran", "the cat sat on the mat"], "the cat sat"])
    assert r["rows"][0] == pytest.approx(1.0)
    assert r["rows"][1] == 0.0
    assert r["rouge_l"] == pytest.approx(0.5)


def test_format_ok_kinds():
    assert format_ok("so the total is 12", "number") and not format_ok("twelve", "number")
    assert format_ok(" Card_Arrival ", "label", labels=["card_arrival"])
    assert not format_ok("The intent is card_arrival", "label", labels=["card_arrival"])
    assert format_ok("```python\ndef f(x):\n    return x\n```\nThis works.", "code")
    assert not format_ok("def f(x) return x", "code") and not format_ok("x = 1", "code")
    assert format_ok("One line.", "sentence") and not format_ok("two\nlines", "sentence")
    assert format_compliance(["1", "a"], "number")["format_ok"] == 0.5
    with pytest.raises(ValueError, match="unknown output format"):
        format_ok("x", "yaml")
    with pytest.raises(ValueError, match="needs the label set"):
        format_ok("x", "label")


FAST = SandboxConfig(timeout=5, cpu_seconds=3, workers=2)


def test_sandbox_passes_and_fails():
    assert run_program(program("def add(a, b):\n    return a + b", "assert add(2, 3) == 5"), FAST).passed
    bad = run_program(program("def add(a, b):\n    return a - b", "assert add(2, 3) == 5"), FAST)
    assert (bad.passed, bad.status) == (False, "failed") and "AssertionError" in bad.detail


def test_sandbox_stops_an_infinite_loop():
    r = run_program("while True:\n    pass\n", SandboxConfig(timeout=3, cpu_seconds=1))
    assert (r.passed, r.status) == (False, "timeout")


def test_sandbox_refuses_network_and_outside_writes(tmp_path):
    net = run_program("import socket\nsocket.create_connection(('127.0.0.1', 9))\n", FAST)
    assert (net.status, net.passed) == ("refused", False) and "network" in net.detail
    target = tmp_path / "escaped.txt"
    write = run_program(f"open({str(target)!r}, 'w').write('x')\n", FAST)
    assert write.status == "refused" and "writing outside" in write.detail
    assert not target.exists()
    assert run_program("open('inside.txt', 'w').write('fine')\nimport tempfile\ntempfile.mkstemp()\n", FAST).passed
    spawn = run_program("import subprocess\nsubprocess.run(['true'])\n", FAST)
    assert spawn.status == "refused"
