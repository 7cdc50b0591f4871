"""The bad-file corpus: classification, extraction, generation and trace files, each with what must
happen — the whole file refused in one line naming the problem and the fix, or the good lines read
and every bad one quarantined with its reason. Never a traceback."""

import json

import pytest

from adaptloop.data.generation import load_generation
from adaptloop.data.sources import load_classification, load_extraction
from adaptloop.data.traces import read_traces
from adaptloop.errors import AdaptloopError

J = json.dumps


def lines(*objs) -> bytes:
    return "".join((o if isinstance(o, str) else J(o)) + "\n" for o in objs).encode()


def two_classes(n: int = 6) -> list[dict]:
    return [{"text": f"t{i}", "label": "xy"[i % 2]} for i in range(n)]


REFUSED, READ = "refused", "read"
CASES = [
    # (reader, name, file bytes, outcome, words | (good, quarantined, reason words))
    ("cls", "empty file", b"", REFUSED, "is empty"),
    ("cls", "blank lines only", b"\n\n  \n", REFUSED, "is empty"),
    ("cls", "not JSON", b"hello\nworld\n", REFUSED, "not valid JSON"),
    ("cls", "JSON arrays", b"[1,2]\n[3]\n", REFUSED, "not a JSON object"),
    ("cls", "latin-1 bytes", "caf\xe9\n".encode("latin1"), REFUSED, "is not UTF-8"),
    ("cls", "binary", bytes(range(256)), REFUSED, "is not UTF-8"),
    ("cls", "no label field", lines({"text": "a"}), REFUSED, "missing or empty 'label'"),
    ("cls", "no text field", lines({"label": "a"}), REFUSED, "missing or empty 'text'"),
    ("cls", "a null label", lines({"text": "a", "label": None}, {"text": "b", "label": "x"}), READ,
     (1, 1, "missing or empty 'label'")),
    ("cls", "a list as label", lines({"text": "a", "label": ["x"]}), REFUSED, "missing or empty 'label'"),
    ("cls", "an empty text", lines({"text": "", "label": "x"}, {"text": "b", "label": "y"}), READ,
     (1, 1, "missing or empty 'text'")),
    ("cls", "a list as text", lines({"text": ["a"], "label": "x"}), REFUSED, "missing or empty 'text'"),
    ("cls", "a number as text", lines({"text": 5, "label": "x"}), REFUSED, "missing or empty 'text'"),
    ("cls", "an object as text", lines({"text": {"a": 1}, "label": "x"}), REFUSED, "missing or empty 'text'"),
    ("cls", "a blank label", lines({"text": "a", "label": "   "}, {"text": "b", "label": "y"}), READ,
     (1, 1, "missing or empty 'label'")),
    ("cls", "NaN as text", b'{"text": NaN, "label": "x"}\n{"text": "c", "label": "y"}\n', READ,
     (1, 1, "missing or empty 'text'")),
    ("cls", "CRLF line ends", "".join(J(r) + "\r\n" for r in two_classes()).encode(), READ, (6, 0, "")),
    ("cls", "a byte-order mark", b"\xef\xbb\xbf" + lines(*two_classes()), READ, (6, 0, "")),
    ("cls", "a cut last line", lines(*two_classes(), '{"text": "cut'), READ, (6, 1, "not valid JSON")),
    ("cls", "blank lines between", lines(two_classes()[0], "", "  ", two_classes()[1]), READ, (2, 0, "")),
    ("ext", "spans not a list", lines({"text": "Ann", "spans": "x"}), REFUSED, "'spans' is not a list"),
    ("ext", "a span past the text", lines({"text": "Ann", "spans": [[0, 9, "PER"]]}), REFUSED, "out of range"),
    ("ext", "a negative offset", lines({"text": "Ann", "spans": [[-1, 2, "PER"]]}), REFUSED, "out of range"),
    ("ext", "end before start", lines({"text": "Ann", "spans": [[2, 1, "PER"]]}), REFUSED, "out of range"),
    ("ext", "overlapping spans", lines({"text": "Ann Lee", "spans": [[0, 3, "PER"], [2, 7, "PER"]]}), REFUSED,
     "overlap"),
    ("ext", "a span without label", lines({"text": "Ann", "spans": [[0, 3, ""]]}), REFUSED, "has no label"),
    ("ext", "float offsets", lines({"text": "Ann", "spans": [[0.0, 3, "PER"]]}), REFUSED, "non-integer offsets"),
    ("ext", "a span without end", lines({"text": "Ann", "spans": [{"start": 0, "label": "PER"}]}), REFUSED,
     "non-integer offsets"),
    ("ext", "a whitespace span", lines({"text": "Ann ", "spans": [[3, 4, "PER"]]}), REFUSED, "only whitespace"),
    ("ext", "fewer tags than tokens", lines({"tokens": ["a", "b"], "tags": ["O"]}), REFUSED, "2 tokens but 1 tags"),
    ("ext", "an unknown tag scheme", lines({"tokens": ["a"], "tags": ["Q-PER"]}), REFUSED,
     "is not O or PREFIX-TYPE"),
    ("ext", "tokens as a string", lines({"tokens": "a b", "tags": ["O", "O"]}), REFUSED, "must be li"),
    ("ext", "one bad line among good", lines({"text": "Ann", "spans": [[0, 3, "PER"]]},
                                             {"text": "Bob", "spans": [[0, 9, "PER"]]}), READ,
     (1, 1, "out of range")),
    ("gen", "no target", lines({"prompt": "q"}), REFUSED, "missing or empty target"),
    ("gen", "no prompt", lines({"target": "a"}), REFUSED, "missing or empty prompt"),
    ("gen", "an empty prompt", lines({"prompt": "", "target": "a"}), REFUSED, "missing or empty prompt"),
    ("gen", "messages as a string", lines({"messages": "hi"}), REFUSED, "'messages' must be a list"),
    ("gen", "no assistant turn", lines({"messages": [{"role": "user", "content": "hi"}]}), REFUSED,
     "'messages' must be a"),
    ("tr", "no input", lines({"id": "a"}), READ, (0, 1, "'input' must be a non-empty string")),
    ("tr", "an unreadable time", lines({"id": "a", "input": "x", "ts": "yesterday"}), READ,
     (0, 1, "is not a time; write 'ts' as ISO 8601")),
    ("tr", "a time out of range", lines({"id": "a", "input": "x", "ts": 1e300}), READ, (0, 1, "out of range")),
    ("tr", "a boolean time", lines({"id": "a", "input": "x", "ts": True}), READ, (0, 1, "'ts' is a boolean")),
    ("tr", "feedback as a string", lines({"id": "a", "input": "x", "feedback": "good"}), READ,
     (0, 1, "'feedback' must be an object")),
    ("tr", "a number as feedback label", lines({"id": "a", "input": "x", "feedback": {"label": 5}}), READ,
     (0, 1, "feedback 'label' must be a non-empty string")),
    ("tr", "an unknown verdict", lines({"id": "a", "input": "x", "feedback": {"verdict": "meh"}}), READ,
     (0, 1, "must be one of correct, wrong")),
    ("tr", "entities past the input", lines({"id": "a", "input": "x", "feedback": {"entities": [[0, 9, "P"]]}}),
     READ, (0, 1, "out of range")),
    ("tr", "input as a list", lines({"id": "a", "input": ["x"]}), READ, (0, 1, "'input' must be a non-empty")),
    ("tr", "a repeated id", lines({"id": "a", "input": "x"}, {"id": "a", "input": "y"}), READ,
     (1, 1, "repeats an earlier line")),
    ("tr", "meta as a list", lines({"id": "a", "input": "x", "meta": [1]}), READ, (0, 1, "'meta' must be an object")),
    ("tr", "no id", lines({"input": "x"}), READ, (0, 1, "no 'id'")),
    ("tr", "not JSON", b"{oops\n", READ, (0, 1, "not valid JSON")),
    ("tr", "an empty file", b"", REFUSED, "is empty"),
]
READERS = {"cls": load_classification, "ext": load_extraction, "gen": load_generation, "tr": read_traces}


@pytest.mark.parametrize("reader, name, data, outcome, expect", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_bad_files(tmp_path, reader, name, data, outcome, expect):
    path = tmp_path / "data.jsonl"
    path.write_bytes(data)
    if outcome == REFUSED:
        with pytest.raises(AdaptloopError) as exc:
            READERS[reader](path)
        assert expect in str(exc.value) and "\n" not in str(exc.value)
        return
    got = READERS[reader](path)
    good, bad = got if isinstance(got, tuple) else (getattr(got, "examples", None) or got.samples, got.quarantined)
    n_good, n_bad, words = expect
    assert (len(good), len(bad)) == (n_good, n_bad)
    assert all(words in q.reason for q in bad), [q.reason for q in bad]
