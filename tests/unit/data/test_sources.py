import json

import pytest

from adaptloop.data.sources import load_classification
from adaptloop.errors import DataError


def test_loads_and_quarantines_bad_lines(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join([
        json.dumps({"text": "hello there", "label": "greet"}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"text": "", "label": "greet"}),
        json.dumps({"text": "no label"}),
        json.dumps({"sentence": "alias fields work", "intent": 3}),
    ]), encoding="utf-8")
    got = load_classification(p)
    assert [e.text for e in got.examples] == ["hello there", "alias fields work"]
    assert got.examples[1].label == "3"
    assert [q.line_no for q in got.quarantined] == [2, 3, 4, 5]
    assert "JSON" in got.quarantined[0].reason and "label" in got.quarantined[3].reason


@pytest.mark.parametrize("content,needle", [
    (None, "does not exist"),
    (b"", "is empty"),
    (b"  \n\n", "is empty"),
    (b'{"text": "caf\xe9", "label": "x"}\n', "not UTF-8"),
    (b'{"question": "q", "answer": "a"}\n', "fields seen: answer, question"),
])
def test_unusable_files_fail_with_one_clear_line(tmp_path, content, needle):
    p = tmp_path / "d.jsonl"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_classification(p)
    msg = str(info.value)
    assert needle in msg and "\n" not in msg


def test_a_json_string_may_hold_unicode_line_separators(tmp_path):
    """JSON Lines end at "\\n" only: U+2028 inside a string (gsm8k's train has one) is not a line end."""
    from adaptloop.data.generation import load_generation

    p = tmp_path / "g.jsonl"
    rows = [{"question": "two\u2028lines\x85here", "answer": "#### 4"}, {"question": "q", "answer": "#### 1"}]
    p.write_bytes(("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\r\n").encode("utf-8"))
    loaded = load_generation(p)
    assert not loaded.quarantined and [s.prompt for s in loaded.samples] == ["two\u2028lines\x85here", "q"]
