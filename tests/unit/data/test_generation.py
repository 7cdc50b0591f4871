"""Generation data: answers, code and the output format read from model outputs, targets and their
presentation, the family choice, and loading generation records with quarantine (no model)."""

from __future__ import annotations

import json

import pytest

from adaptloop.data.generation import Sample, load_generation
from adaptloop.data.outputs import extract_code, final_answer, normalise_output
from adaptloop.data.prompts import answer_target, cot_target, instruction, present
from adaptloop.data.sources import data_families
from adaptloop.data.spec import choose_family, family_from_prompt
from adaptloop.errors import DataError
from adaptloop.evaluate.generation import format_ok
from tests.conftest import write_jsonl

GSM = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72"
# the first records of ../shared/datasets/gsm8k/test.jsonl and mbpp/test.jsonl, as they are there
GSM8K_RECORD = {
    "question": ("Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins "
                 "for her friends every day with four. She sells the remainder at the farmers' market daily for $2 "
                 "per fresh duck egg. How much in dollars does she make every day at the farmers' market?"),
    "answer": ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day "
               "at the farmer’s market.\n#### 18"),
}
MBPP_RECORD = {
    "task_id": 11,
    "text": "Write a python function to remove first and last occurrence of a given character from the string.",
    "code": ("def remove_Occ(s,ch): \r\n    for i in range(len(s)): \r\n        if (s[i] == ch): \r\n            s "
             "= s[0 : i] + s[i + 1:] \r\n            break\r\n    for i in range(len(s) - 1,-1,-1):  \r\n        if "
             "(s[i] == ch): \r\n            s = s[0 : i] + s[i + 1:] \r\n            break\r\n    return s "),
    "test_list": ["assert remove_Occ(\"hello\",\"l\") == \"heo\"",
                  "assert remove_Occ(\"abcda\",\"a\") == \"bcd\"",
                  "assert remove_Occ(\"PHP\",\"P\") == \"H\""],
    "test_setup_code": "",
}
LABELS = ("card_arrival", "card_arrival_delay", "lost_or_stolen_card")


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


def test_extract_code_prefers_the_fence():
    assert extract_code("Here:\n```python\ndef f():\n    return 1\n```\nbye") == "def f():\n    return 1"
    assert extract_code("def g():\n    pass\n") == "def g():\n    pass"


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


def test_cot_and_answer_targets():
    assert cot_target(GSM) == "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips.\n#### 72"
    assert answer_target(GSM) == "#### 72"
    assert cot_target("just text") == "just text"


def test_present_puts_the_instruction_first_and_fences_code():
    s = Sample(prompt="Add two numbers.", target="def add(a, b):\n    return a + b",
               extra={"test_list": ["assert add(1, 2) == 3"]})
    shown = present(s, "code", instruction("code", (), "full"))
    assert shown.prompt.startswith("Write a Python function") and "assert add(1, 2) == 3" in shown.prompt
    assert shown.target.startswith("```python\ndef add")
    labels = ("card_arrival", "lost_or_stolen_card")
    assert "card_arrival, lost_or_stolen_card" in instruction("label", labels, "full")
    assert instruction("label", labels, "short") == "Reply with the label only."
    m = present(Sample(prompt="q", target=GSM), "math", "", "cot")
    assert "<<" not in m.target and m.target.endswith("#### 72")


def test_family_choice_for_generation(tmp_path):
    assert family_from_prompt("solve grade-school math word problems") == "generation"
    assert family_from_prompt("summarize papers into a one-line tldr") == "generation"
    assert data_families(write_jsonl(tmp_path / "gsm8k.jsonl", [GSM8K_RECORD])) == {"generation"}
    assert data_families(write_jsonl(tmp_path / "mbpp.jsonl", [MBPP_RECORD])) == {"generation"}
    # text + label data is classification unless the prompt asks for generated replies
    assert choose_family("classify banking intents", {"classification"}) == "classification"
    assert choose_family("reply with the intent name of each banking message", {"classification"}) == "generation"
