"""Extraction data: formats and their conversions, loading with quarantine, family choice, recipes.
(Entity metrics: tests/unit/evaluate/test_entities.py; diagnosis: tests/unit/diagnose/test_entities.py;
span thresholds: tests/unit/train/test_span_threshold.py; subword alignment on real data:
tests/integration/test_extraction.py.)"""

from __future__ import annotations

import pytest

from adaptloop.data.recipes import RecipeBook
from adaptloop.data.sources import data_families, load_extraction, load_for
from adaptloop.data.spans import (
    check_spans,
    detect_scheme,
    diversify,
    mine_negatives,
    snap,
    spans_to_tags,
    tags_to_spans,
)
from adaptloop.data.spec import choose_family, family_from_prompt, infer_extraction_spec
from adaptloop.errors import DataError, LabelError
from adaptloop.types import Example
from tests.conftest import write_jsonl

TOKENS = ["Ann", "Lee", "flew", "to", "New", "York", "today"]
IOB2 = ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O"]
IOB1 = ["I-PER", "I-PER", "O", "O", "I-LOC", "I-LOC", "O"]
BILOU = ["B-PER", "L-PER", "O", "O", "B-LOC", "L-LOC", "O"]
GOLD = [(0, 7, "PER"), (16, 24, "LOC")]


@pytest.mark.parametrize("tags", [IOB2, IOB1, BILOU], ids=["iob2", "iob1", "bilou"])
def test_every_scheme_decodes_to_the_same_spans(tags):
    text, spans = tags_to_spans(TOKENS, tags)
    assert text == "Ann Lee flew to New York today"
    assert spans == GOLD
    assert [text[s:e] for s, e, _ in spans] == ["Ann Lee", "New York"]


def test_adjacent_entities_of_one_type():
    _, iob1 = tags_to_spans(["A", "B"], ["I-PER", "B-PER"])  # IOB1: B- only splits same-type neighbours
    _, bilou = tags_to_spans(["A", "B"], ["U-PER", "U-PER"])
    assert iob1 == bilou == [(0, 1, "PER"), (2, 3, "PER")]


def test_round_trip_spans_to_tags_and_back():
    text = " ".join(TOKENS)
    tokens, tags = spans_to_tags(text, GOLD)
    assert tokens == TOKENS and tags == IOB2
    assert tags_to_spans(tokens, tags)[1] == GOLD


@pytest.mark.parametrize("tags,needle", [(["PER", "O"], "PREFIX-TYPE"), (["S-PER", "O"], "BIOES")])
def test_other_schemes_are_rejected_with_the_fix(tags, needle):
    with pytest.raises(DataError, match=needle):
        detect_scheme(tags)


def test_span_checks_say_what_is_wrong():
    text = "call Bob at 555"
    assert check_spans(text, [{"start": 5, "end": 8, "label": "PER"}])[0] == [(5, 8, "PER")]
    assert check_spans(text, [{"start": 4, "end": 9, "label": "PER"}])[0] == [(5, 8, "PER")]  # trimmed
    assert "out of range" in check_spans(text, [{"start": 12, "end": 40, "label": "NUM"}])[1]
    assert "overlap" in check_spans(text, [[5, 8, "PER"], [7, 10, "X"]])[1]
    assert "no label" in check_spans(text, [[5, 8, ""]])[1]
    assert "non-integer" in check_spans(text, [["5", 8, "PER"]])[1]


def test_snap_widens_a_subword_span_to_its_word():
    assert snap("Visit Kopenhagen now", 8, 12) == (6, 16)


def test_loader_quarantines_every_bad_line_with_its_reason(tmp_path):
    rows = [
        {"tokens": TOKENS, "tags": IOB2},
        {"tokens": ["a", "b"], "tags": ["O"]},
        {"text": "Bob is here", "spans": [{"start": 0, "end": 3, "label": "PER"}]},
        {"text": "Bob is here", "spans": [{"start": 0, "end": 30, "label": "PER"}]},
        {"text": "Bob Smith", "spans": [[0, 5, "PER"], [4, 9, "PER"]]},
        {"tokens": ["x"], "tags": ["E-PER"]},
    ]
    path = write_jsonl(tmp_path / "mixed.jsonl", rows)
    path.write_text(path.read_text() + "{not json\n")
    loaded = load_extraction(path)
    assert [e.text for e in loaded.examples] == [" ".join(TOKENS), "Bob is here"]
    reasons = {q.line_no: q.reason for q in loaded.quarantined}
    assert set(reasons) == {2, 4, 5, 6, 7}
    assert "1 tags" in reasons[2] and "out of range" in reasons[4] and "overlap" in reasons[5]
    assert "BIOES" in reasons[6] and "JSON" in reasons[7]
    assert len(loaded.examples) + len(loaded.quarantined) == 7  # nothing lost
    assert loaded.family == "extraction" and data_families(path) == {"extraction"}


def test_a_file_without_usable_entity_records_fails_as_a_whole(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"tokens": ["a"], "tags": ["O", "O"]}])
    with pytest.raises(DataError, match="no usable entity records.*tokens"):
        load_extraction(path)


def test_prompt_decides_the_family_only_where_the_data_allows_both(tmp_path):
    assert family_from_prompt("build me a PII detection model") == "extraction"
    assert family_from_prompt("extract product names") == "extraction"
    assert family_from_prompt("classify banking intents") == "classification"
    both = write_jsonl(tmp_path / "both.jsonl", [
        {"text": "Bob paid", "label": "payment", "spans": [{"start": 0, "end": 3, "label": "PER"}]},
        {"text": "Ann left", "label": "other", "spans": [{"start": 0, "end": 3, "label": "PER"}]}])
    assert load_for(both, "detect PII in messages").family == "extraction"
    assert load_for(both, "classify messages by intent").family == "classification"
    assert choose_family("a model for my data", {"classification", "extraction"}) == "classification"
    with pytest.raises(DataError, match="prompt asks for extraction.*needs 'spans'"):
        choose_family("extract product names", {"classification"}, "x.jsonl")


def test_spec_needs_at_least_one_entity():
    with pytest.raises(LabelError, match="no entity annotations"):
        infer_extraction_spec("detect PII", [Example("nothing here", "O")])
    spec = infer_extraction_spec("detect PII", [Example("Bob", "PER", spans=((0, 3, "PER"),))])
    assert spec.family == "extraction" and spec.labels == ("PER",) and spec.primary_metric == "f1"


def test_negatives_and_diversify_recipes():
    ex = [Example("Ann Lee lives in Oslo. The weather is nice today.", "PER",
                  spans=((0, 7, "PER"), (17, 21, "LOC"))),
          Example("Bob visited Rome", "PER", spans=((0, 3, "PER"), (12, 16, "LOC")))]
    neg = mine_negatives(ex, share=1.0)
    assert [n.text for n in neg] == ["The weather is nice today."] and not neg[0].spans
    div = diversify(ex, seed=3)
    for d in div:
        assert all(d.text[s:t] in {"Ann Lee", "Bob", "Oslo", "Rome"} for s, t, _ in d.spans)
    book = RecipeBook(ex, [], [], family="extraction")
    assert len(book["negatives"]) == 3 and len(book["diversify+negatives"]) >= 3
    with pytest.raises(ValueError, match="do not apply to extraction"):
        book["augment"]
    with pytest.raises(ValueError, match="do not apply to classification"):
        RecipeBook(ex, [], [])["negatives"]
