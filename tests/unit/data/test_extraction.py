"""Extraction: formats and their conversions, loading with quarantine, entity metrics,
subword alignment and windowing, diagnosis, recipes, family choice, span thresholds."""

from __future__ import annotations

import json

import numpy as np
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
from adaptloop.diagnose.entities import diagnose_entities, entity_errors
from adaptloop.errors import DataError, LabelError
from adaptloop.evaluate.entities import entity_counts, entity_metrics, micro_f1
from adaptloop.train.span_threshold import tune_thresholds
from adaptloop.types import Example

from .conftest import read_rows, write_jsonl

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


def test_entity_metrics_are_exact_span_matches():
    texts = ["Ann Lee flew to New York today", "nothing here", "Bob met Sue"]
    gold = [GOLD, [], [(0, 3, "PER"), (8, 11, "PER")]]
    pred = [[(0, 3, "PER"), (16, 24, "LOC")],  # boundary error on Ann Lee, LOC exact
            [(0, 7, "ORG")],  # spurious on an entity-free sentence
            [(0, 3, "PER"), (8, 11, "LOC", 0.9)]]  # type error (scores are ignored)
    m = entity_metrics(texts, gold, pred, labels=["PER", "LOC", "ORG"])
    assert (m["n_gold"], m["n_pred"]) == (4, 5)
    assert m["precision"] == pytest.approx(2 / 5) and m["recall"] == pytest.approx(2 / 4)
    assert m["f1"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert m["per_type"]["LOC"]["precision"] == pytest.approx(0.5) and m["per_type"]["ORG"]["support"] == 0
    assert entity_metrics(texts, gold, gold)["f1"] == 1.0


def _random_rows(rng: np.random.Generator, n: int) -> tuple[list[str], list[list], list[list]]:
    """Texts of 5 words with random gold and predicted spans (exact, shifted, retyped, spurious)."""
    words = ["Ann", "met", "Bob", "in", "Oslo"]
    starts = [0, 4, 8, 11, 14]
    texts, gold, pred = [], [], []
    for _ in range(n):
        g = [(starts[i], starts[i] + len(words[i]), str(rng.choice(["PER", "LOC"])))
             for i in range(5) if rng.random() < 0.3]
        p = []
        for s, e, t in g:
            roll = rng.random()
            if roll < 0.5:
                p.append((s, e, t))
            elif roll < 0.7:
                p.append((s, e, "ORG"))
            elif roll < 0.8:
                p.append((s, e - 1, t))
        if rng.random() < 0.2 and not g:
            p.append((4, 7, "PER"))
        texts.append(" ".join(words))
        gold.append(g)
        pred.append(p)
    return texts, gold, pred


def test_entity_counts_sum_to_seqeval_micro_f1_on_any_subset():
    rng = np.random.default_rng(0)
    texts, gold, pred = _random_rows(rng, 60)
    counts = entity_counts(texts, gold, pred)
    for _ in range(20):
        ix = rng.integers(0, 60, size=int(rng.integers(1, 60)))
        want = entity_metrics([texts[i] for i in ix], [gold[i] for i in ix], [pred[i] for i in ix])["f1"]
        assert micro_f1(counts[ix].sum(axis=0)) == pytest.approx(want)
    assert micro_f1(np.zeros(3, dtype=int)) == 1.0  # nothing to find, nothing found


def test_alignment_and_windowing_round_trip_on_real_data():
    """Gold spans → subword labels → (windowed) decode gives the gold spans back exactly."""
    from adaptloop.train.encoder import resolve_encoder
    from adaptloop.train.tagger import _load_tokenizer, align_labels, decode, windows

    rows = read_rows("presidio_pii", "test")[:40] + read_rows("wnut17", "test")[:40]
    path_examples = [Example(r["text"], "x", spans=tuple(check_spans(r["text"], r["spans"])[0])) if "text" in r
                     else Example(*tags_to_spans(r["tokens"], r["tags"])[:1], "x",
                                  spans=tuple(tags_to_spans(r["tokens"], r["tags"])[1])) for r in rows]
    types = sorted({s[2] for e in path_examples for s in e.spans})
    tok = _load_tokenizer(resolve_encoder("sentence-transformers/all-MiniLM-L6-v2"))
    w = windows(tok, [e.text for e in path_examples], max_length=24, stride=8)
    assert len(w["input_ids"]) > len(path_examples)  # long inputs were windowed
    onehot: list[dict] = [{} for _ in path_examples]
    for off, t in zip(w["offsets"], w["text"]):
        for (s, e), lab in zip(off, align_labels(off, path_examples[t].spans, types)):
            if lab >= 0:
                onehot[t][(s, e)] = np.eye(1 + 2 * len(types))[lab]
    for ex, probs in zip(path_examples, onehot):
        keys = sorted(probs)
        got = decode(ex.text, keys, np.stack([probs[k] for k in keys]), types)
        assert [(d["start"], d["end"], d["label"]) for d in got] == list(ex.spans)


def _row(i, text, gold, pred):
    return {"id": f"r{i}", "text": text, "gold": [list(g) for g in gold], "pred": [[*p, 0.9] for p in pred]}


def test_diagnosis_names_over_prediction_and_spurious_entities():
    rows = [_row(i, "Ann went home", [(0, 3, "PER")], [(0, 3, "PER"), (9, 13, "PER")]) for i in range(4)]
    rows += [_row(10 + i, "it is raining", [], [(0, 2, "PER")]) for i in range(4)]
    rows += [_row(20 + i, "Rome and Oslo", [(0, 4, "LOC"), (9, 13, "LOC")], [(0, 4, "ORG")]) for i in range(3)]
    d = diagnose_entities(rows, ["PER", "LOC", "ORG"])
    kinds = {(f.kind, f.target.get("label")) for f in d.findings}
    assert ("over_prediction", "PER") in kinds and ("spurious_entities", None) in kinds
    assert ("under_prediction", "LOC") in kinds
    confusion = d.top("type_confusion")
    assert confusion.evidence["gold"] == "LOC" and confusion.evidence["pred"] == "ORG"
    over = next(f for f in d.findings if f.kind == "over_prediction")
    assert over.evidence["false_positives"] == 8 and "negatives" in over.suggests
    errs = entity_errors(rows)
    assert errs["spurious"] == 8 and errs["empty_with_predictions"] == 4


def test_diagnosis_separates_boundary_from_type_errors():
    rows = [_row(i, "Ann Lee sang", [(0, 7, "PER")], [(0, 3, "PER")]) for i in range(3)]
    d = diagnose_entities(rows, ["PER"])
    assert d.top("boundary_errors").evidence["count"] == 3 and d.top("type_confusion") is None


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


def test_thresholds_drop_low_confidence_spurious_spans():
    texts = ["Ann sang", "it rained", "Bob ran"]
    gold = [[(0, 3, "PER")], [], [(0, 3, "PER")]]
    preds = [[{"start": 0, "end": 3, "label": "PER", "score": 0.97}],
             [{"start": 0, "end": 2, "label": "PER", "score": 0.55}],
             [{"start": 0, "end": 3, "label": "PER", "score": 0.9}]]
    thr, f1 = tune_thresholds(texts, gold, preds, ["PER"])
    assert f1 == 1.0 and 0.55 < thr["PER"] <= 0.9


def test_example_ids_cover_spans():
    a = Example("Bob ran", "PER", spans=((0, 3, "PER"),))
    b = Example("Bob ran", "PER", spans=((0, 3, "ORG"),))
    assert a.id != b.id
    assert Example.from_dict(json.loads(json.dumps(a.to_dict()))) == a


def test_token_f1_is_lenient_about_boundaries():
    texts = ["Ann Lee flew"]
    m = entity_metrics(texts, [[(0, 7, "PER")]], [[(0, 3, "PER")]])
    assert m["f1"] == 0.0 and m["token_f1"] == pytest.approx(2 * 1.0 * 0.5 / 1.5)


def test_thresholds_leave_types_dev_says_little_about_alone():
    """A type with too few predicted spans on dev keeps threshold 0; ties never raise one."""
    texts = ["Ann sang", "it rained", "Bob ran", "Acme won"]
    gold = [[(0, 3, "PER")], [], [(0, 3, "PER")], [(0, 4, "ORG")]]
    preds = [[{"start": 0, "end": 3, "label": "PER", "score": 0.97}],
             [{"start": 0, "end": 2, "label": "PER", "score": 0.55}],
             [{"start": 0, "end": 3, "label": "PER", "score": 0.9}],
             [{"start": 0, "end": 4, "label": "ORG", "score": 0.3}]]
    thr, _ = tune_thresholds(texts, gold, preds, ["ORG", "PER", "LOC"])
    assert set(thr) == {"PER"}  # ORG seen once, LOC never: untouched
