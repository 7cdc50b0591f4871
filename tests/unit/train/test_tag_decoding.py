"""Tag decoding: the IOB2-constrained Viterbi over words against each subword's own argmax."""

from __future__ import annotations

import numpy as np

from adaptloop.train.tagger import GREEDY, bio_viterbi, decode

TYPES = ["LOC", "PER"]  # tags: O, B-LOC, I-LOC, B-PER, I-PER


def _rows(*rows: dict[int, float]) -> np.ndarray:
    """One probability row per unit from {tag: p}; O takes what is left."""
    out = np.zeros((len(rows), 5))
    for i, r in enumerate(rows):
        for k, v in r.items():
            out[i, k] = v
        out[i, 0] = 1.0 - sum(r.values())
    return out


def test_viterbi_never_opens_an_entity_with_an_inside_tag_and_never_changes_type_inside_one():
    """An I- first (argmax I-PER at the start) becomes the B- of its type when that is likelier than O; an
    I-LOC after B-PER becomes I-PER or a new B-; an unconstrained argmax would have broken both."""
    probs = _rows({4: 0.5, 3: 0.3}, {4: 0.6}, {2: 0.5, 4: 0.3, 1: 0.1})
    assert probs.argmax(1).tolist() == [4, 4, 2]
    tags = bio_viterbi(probs).tolist()
    assert tags[0] == 3 and tags[1] == 4 and tags[2] in (1, 3, 4)
    for prev, cur in zip([0, *tags], tags):
        if cur and cur % 2 == 0:
            assert prev in (cur - 1, cur)
    assert bio_viterbi(np.zeros((0, 5))).tolist() == []


def test_viterbi_keeps_a_valid_argmax_path():
    probs = _rows({3: 0.9}, {4: 0.8}, {}, {1: 0.7}, {3: 0.6})
    assert bio_viterbi(probs).tolist() == probs.argmax(1).tolist() == [3, 4, 0, 1, 3]


def test_constrained_decoding_reads_each_word_from_its_first_subword():
    """'Mont' 'ana' 'Smith': the word Montana's second piece says I-PER, its first B-LOC: the constrained
    decoder reads the word as B-LOC (its first piece); Smith's likeliest tag, I-PER, cannot continue a LOC,
    so Smith opens a PER. The greedy decoder follows the pieces: the I-PER piece and Smith run on from
    Montana, and the snap to whole words merges it all into one LOC."""
    text = "Montana Smith"
    keys = [(0, 4), (4, 7), (8, 13)]
    probs = _rows({1: 0.8}, {4: 0.6}, {4: 0.6, 3: 0.3})
    spans = [(d["start"], d["end"], d["label"]) for d in decode(text, keys, probs, TYPES)]
    assert spans == [(0, 7, "LOC"), (8, 13, "PER")]
    lenient = [(d["start"], d["end"], d["label"]) for d in decode(text, keys, probs, TYPES, decoder=GREEDY)]
    assert lenient == [(0, 13, "LOC")]


def test_thresholds_filter_the_constrained_spans_by_their_mean_probability():
    text = "Paris Hilton"
    probs = _rows({3: 0.55}, {4: 0.5, 3: 0.1})
    (span,) = decode(text, [(0, 5), (6, 12)], probs, TYPES)
    assert (span["start"], span["end"], span["label"]) == (0, 12, "PER") and span["score"] == 0.525
    assert decode(text, [(0, 5), (6, 12)], probs, TYPES, {"PER": 0.6}) == []


def test_a_piece_that_spans_several_words_gives_one_entity():
    """A SentencePiece tokenizer may keep ``U.S.`` as one piece over four word units: the units after the
    first continue the entity the piece began (its B- read as I-), so it decodes to one span, not four."""
    text = "the U.S. team"
    keys = [(0, 3), (4, 8), (9, 13)]
    probs = _rows({}, {1: 0.9}, {})
    assert [(d["start"], d["end"], d["label"]) for d in decode(text, keys, probs, TYPES)] == [(4, 8, "LOC")]


def test_the_decoder_is_kept_with_the_model_and_one_saved_before_decodes_as_it_did(tmp_path):
    """A tagger ensemble saved now names the IOB2 decoder and loads with it; one whose metadata names none
    (saved before decoders were recorded) keeps the greedy decoder its gate saw, and decodes as that did."""
    import json

    from adaptloop.train import load_trained
    from adaptloop.train.ensemble import TaggerEnsemble
    from adaptloop.train.fake import FakeTagger
    from adaptloop.train.tagger import DECODER

    members = [FakeTagger(TYPES, {"paris": "LOC"}), FakeTagger(TYPES, {"paris": "LOC", "smith": "PER"})]
    TaggerEnsemble(members).save(tmp_path / "ens")
    meta_path = tmp_path / "ens" / "adaptloop_model.json"
    assert json.loads(meta_path.read_text())["decoder"] == DECODER
    assert load_trained(tmp_path / "ens").decoder == DECODER
    meta = json.loads(meta_path.read_text())
    del meta["decoder"]
    meta_path.write_text(json.dumps(meta))
    old = load_trained(tmp_path / "ens")
    assert old.decoder == GREEDY
    # the decoder it names is the one its spans come from: the Montana Smith case above, as an ensemble's average

    class Fixed:  # a member whose tag probabilities are given
        labels, encoder_name = tuple(TYPES), "fixed"

        def token_probs(self, texts, batch_size=32):
            return [([(0, 4), (4, 7), (8, 13)], _rows({1: 0.8}, {4: 0.6}, {4: 0.6, 3: 0.3})) for _ in texts]

    def spans(decoder):
        (row,) = TaggerEnsemble([Fixed(), Fixed()], decoder=decoder).predict_spans(["Montana Smith"])
        return [(d["start"], d["end"], d["label"]) for d in row]

    assert spans(DECODER) == [(0, 7, "LOC"), (8, 13, "PER")] and spans(GREEDY) == [(0, 13, "LOC")]


def test_an_unknown_decoder_name_is_refused_not_read_as_greedy():
    import pytest

    with pytest.raises(ValueError, match="unknown tag decoder 'bilou'"):
        decode("Paris", [(0, 5)], np.array([[0.1, 0.8, 0.1, 0.0, 0.0]]), TYPES, decoder="bilou")


def test_a_bias_against_o_reads_a_less_sure_word_as_an_entity_and_keeps_its_score():
    """'Smith' at p(B-PER) 0.35 against O's 0.55: O wins unbiased; with O's log-odds lowered by 1 (0.55 /
    e = 0.20) B-PER does, in both decoders. The span's score is still the model's own probability."""
    text, keys = "met Smith", [(0, 3), (4, 9)]
    probs = _rows({}, {3: 0.35, 1: 0.1})
    for decoder in ("iob2", GREEDY):
        assert decode(text, keys, probs, TYPES, decoder=decoder) == []
        (span,) = decode(text, keys, probs, TYPES, decoder=decoder, o_bias=1.0)
        assert (span["start"], span["end"], span["label"], span["score"]) == (4, 9, "PER", 0.35)
    assert decode(text, keys, probs, TYPES, o_bias=0.1) == []  # not enough to pass O

