"""Generation metrics, the code sandbox and generation data loading (no model)."""

from __future__ import annotations

import json

import pytest

from adaptloop.data.generation import code_tests, infer_kind, load_generation
from adaptloop.data.outputs import extract_code, final_answer, normalise_output
from adaptloop.errors import DataError
from adaptloop.evaluate.generation import exact_match, format_compliance, format_ok, rouge_l
from adaptloop.evaluate.sandbox import SandboxConfig, pass_at_1, program, run_program
from tests.conftest import DATASETS, read_rows, write_jsonl


@pytest.mark.parametrize("text, want", [
    ("She sold 48 + 24 = 72 clips.\n#### 72", "72"),
    ("#### 1,200", "1200"),
    ("so $18.50 in total. The answer is $18.50.", "18.5"),
    ("\\boxed{-3}", "-3"),
    ("3 apples and 4 pears make 7", "7"),
    ("#### 5.0", "5"),
    ("no number here", None),
])
def test_final_answer(text, want):
    assert final_answer(text) == want


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


def test_extract_code_prefers_the_fence():
    assert extract_code("Here:\n```python\ndef f():\n    return 1\n```\nbye") == "def f():\n    return 1"
    assert extract_code("def g():\n    pass\n") == "def g():\n    pass"


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


def test_sandbox_passes_the_reference_solutions():
    """A sample of mbpp and humaneval references pass (benchmarks/sandbox_references.py runs all)."""
    mbpp = read_rows("mbpp", "test")[:12]
    human = read_rows("humaneval", "test")[:8]
    codes = [r["code"] for r in mbpp] + [r["prompt"] + r["canonical_solution"] for r in human]
    tests = ["\n".join([r["test_setup_code"], *r["test_list"]]) for r in mbpp] + \
        [f"{r['test']}\n\ncheck({r['entry_point']})" for r in human]
    result = pass_at_1(codes, tests, FAST)
    assert result["pass_at_1"] == 1.0, [r for r in result["rows"] if not r["passed"]]


def test_load_generation_formats_and_quarantine(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [
        {"question": "1+1?", "answer": "1+1=2\n#### 2"},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello"}]},
        {"question": "", "answer": "x"},
        {"messages": [{"role": "user", "content": "only a question"}]},
        {"prompt": "p", "target": 7},
    ])
    loaded = load_generation(path)
    assert [s.target for s in loaded.samples] == ["1+1=2\n#### 2", "Hello", "7"]
    assert loaded.samples[1].context == (("system", "Be brief."),)
    assert loaded.samples[1].messages(with_target=True)[-1] == {"role": "assistant", "content": "Hello"}
    assert [q.line_no for q in loaded.quarantined] == [3, 4]
    assert "empty prompt" in loaded.quarantined[0].reason
    (tmp_path / "bad.jsonl").write_text(json.dumps({"foo": 1}) + "\n")
    with pytest.raises(DataError, match="no usable generation records"):
        load_generation(tmp_path / "bad.jsonl")


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


LABELS = ("card_arrival", "card_arrival_delay", "lost_or_stolen_card")


@pytest.mark.parametrize("kind, output, want", [
    ("label", "Card_Arrival.", "card_arrival"),
    ("label", "lost or stolen card", "lost_or_stolen_card"),
    ("label", "I think it is card_arrival_delay, since", "card_arrival_delay"),
    ("label", "card_arival", "card_arrival"),
    ("label", "card_arrival or card_arrival_delay", "card_arrival or card_arrival_delay"),  # two: left alone
    ("label", "no idea", "no idea"),
    ("math", "2 + 2 = 4\n#### 4\nThen more text", "2 + 2 = 4\n#### 4"),
    ("math", "so the total is 12 dollars.", "so the total is 12 dollars.\n#### 12"),
    ("math", "I cannot tell", "I cannot tell"),
    ("summary", "We propose X for Y.  We show Z.\nMore.", "We propose X for Y."),
    ("code", "Here:\n```python\ndef f():\n    return 1\n```\nDone.", "```python\ndef f():\n    return 1\n```"),
    ("text", "anything at all", "anything at all"),
])
def test_normalise_output_puts_content_into_the_format_and_never_invents(kind, output, want):
    got = normalise_output(output, kind, labels=LABELS)
    assert got == want
    if kind == "label" and got in LABELS:
        assert format_ok(got, "label", labels=LABELS)
