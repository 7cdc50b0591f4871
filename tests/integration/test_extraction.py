"""Subword alignment and windowing on real presidio_pii and wnut17 sentences with MiniLM's tokenizer."""

from __future__ import annotations

import numpy as np
import pytest

from adaptloop.data.spans import check_spans, tags_to_spans
from adaptloop.types import Example
from tests.conftest import read_rows

pytestmark = pytest.mark.integration


def test_alignment_and_windowing_round_trip_on_real_data():
    """Gold spans → subword labels → (windowed) decode gives the gold spans back exactly, with either
    decoder."""
    from adaptloop.train.encoder import resolve_encoder
    from adaptloop.train.tagger import DECODER, GREEDY, _load_tokenizer, align_labels, decode, windows

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
        for decoder in (DECODER, GREEDY):
            got = decode(ex.text, keys, np.stack([probs[k] for k in keys]), types, decoder=decoder)
            assert [(d["start"], d["end"], d["label"]) for d in got] == list(ex.spans)


def test_case_types_mark_the_subwords_with_a_capital_for_a_tokenizer_that_drops_case():
    """MiniLM's tokenizer lowercases (the ids of "Paris" and "paris" agree), so the token types carry
    the case: 1 on every subword holding a capital letter, 0 elsewhere and on special tokens."""
    from adaptloop.train.encoder import resolve_encoder
    from adaptloop.train.tagger import _load_tokenizer, drops_case, windows

    tok = _load_tokenizer(resolve_encoder("sentence-transformers/all-MiniLM-L6-v2"))
    assert drops_case(tok)
    text = "we met McDonald in PARIS at noon"
    w = windows(tok, [text], max_length=32, stride=0, case=True)
    marked = {text[s:e] for (s, e), k in zip(w["offsets"][0], w["types"][0]) if k}
    assert marked and all(any(c.isupper() for c in piece) for piece in marked)
    assert {"we", "met", "in", "at", "noon"}.isdisjoint(marked) and w["types"][0][0] == w["types"][0][-1] == 0


def test_the_o_tag_weighs_less_the_more_it_outnumbers_the_entity_tags():
    """Square-root inverse frequency, O against the entity tags together, at most 1; special tokens (-100)
    do not count."""
    from adaptloop.train.tagger import o_weight

    sparse = [[-100] + [0] * 95 + [1, 2, 2, 3, 4] + [-100]]  # 95% O, as in wnut17
    assert o_weight(sparse) == pytest.approx((5 / 95) ** 0.5)
    assert o_weight([[0, 0, 1, 2], [3, 4]]) == 1.0  # entity tags outnumber O: never above 1
    assert o_weight([[0, 0, -100]]) == o_weight([]) == 1.0  # nothing to weigh against
