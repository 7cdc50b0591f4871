"""Held-out splits: stratified (deterministic, order-free, class shares kept) and by group."""

import random
from collections import Counter

import pytest

from adaptloop.data.split import group_split, grouped, held_out_split, stratified_split
from adaptloop.types import Example


def _examples(rows):
    return [Example(r["text"], r["label"]) for r in rows]


def test_stratified_split_is_deterministic_and_order_free(banking_sample):
    ex = _examples(banking_sample[:2000])
    held1, rest1 = stratified_split(ex, fraction=0.1, seed=0)
    shuffled = ex[:]
    random.Random(3).shuffle(shuffled)
    held2, rest2 = stratified_split(shuffled, fraction=0.1, seed=0)
    assert [e.id for e in held1] == [e.id for e in held2]
    assert {e.id for e in held1}.isdisjoint({e.id for e in rest1})
    assert len(held1) + len(rest1) == len(ex)
    held3, _ = stratified_split(ex, fraction=0.1, seed=1)
    assert {e.id for e in held3} != {e.id for e in held1}


def test_stratified_split_keeps_class_shares(banking_sample):
    ex = _examples(banking_sample)
    held, rest = stratified_split(ex, fraction=0.1, seed=0)
    total, h = Counter(e.label for e in ex), Counter(e.label for e in held)
    for label, n in total.items():
        assert abs(h[label] - 0.1 * n) <= 1, label
    assert set(Counter(e.label for e in rest)) == set(total)  # training sees every class


def test_max_n_caps_and_tiny_classes_stay_in_training():
    ex = [Example(f"text {i}", "a") for i in range(100)] + [Example("lonely", "b")]
    held, rest = stratified_split(ex, fraction=0.4, seed=0, max_n=10)
    assert len(held) == 10
    assert any(e.label == "b" for e in rest) and all(e.label == "a" for e in held)


def test_bad_fraction_is_rejected():
    with pytest.raises(ValueError):
        stratified_split([Example("a", "x")], fraction=1.5, seed=0)


def test_ungrouped_or_few_groups_fall_back_to_stratified():
    plain = [Example(f"text {i}", "ab"[i % 2]) for i in range(100)]
    few = [Example(f"text {i}", "ab"[i % 2], group=str(i % 3)) for i in range(100)]
    assert not grouped(plain) and not grouped(few)
    assert held_out_split(few, fraction=0.2, seed=0)[2] == "stratified"
    # a group whose class exists nowhere else stays in training
    ex = [Example(f"t{i}", "a", group=f"g{i % 20}") for i in range(100)] + [Example("only b", "b", group="gb")]
    held, rest = group_split(ex, fraction=0.5, seed=0)
    assert any(e.label == "b" for e in rest) and 40 <= len(held) <= 55


def _tagged(text, *mentions):
    """A row whose entities are the given words of ``text``."""
    spans = []
    for word in mentions:
        start = text.index(word)
        spans.append((start, start + len(word), "PER"))
    return Example(text, "PER", spans=tuple(sorted(spans)))


def test_extraction_rows_are_held_out_by_shared_mention():
    names = [f"Name{i}" for i in range(60)]
    rows = [_tagged(f"{names[i]} met {names[(i * 7) % 60]} at noon {i}", names[i], names[(i * 7) % 60])
            for i in range(0, 60, 2)]
    rows += [_tagged(f"we saw {n.upper()} again, {k}", n.upper()) for k, n in enumerate(names[:10])]  # case-folded
    rows += [Example(f"nothing here {i}", "O") for i in range(40)]
    held, rest, how = held_out_split(rows, fraction=0.3, seed=0)
    assert how == "mention" and held and rest and len(held) + len(rest) == len(rows)

    def mentions(part):
        return {e.text[a:b].casefold() for e in part for a, b, _ in e.spans}

    assert mentions(held) and mentions(held).isdisjoint(mentions(rest))
    again = held_out_split(list(reversed(rows)), fraction=0.3, seed=0)[0]
    assert [e.id for e in again] == [e.id for e in held]  # order-free, as every split
    plain = [Example(f"text {i}", "ab"[i % 2]) for i in range(100)]
    assert held_out_split(plain, fraction=0.2, seed=0)[2] == "stratified"  # classification: as before


def test_rows_that_all_share_one_mention_fall_back_to_stratified():
    rows = [_tagged(f"Acme shipped order {i}", "Acme") for i in range(50)]
    held, rest, how = held_out_split(rows, fraction=0.2, seed=0)
    assert how == "stratified" and len(held) == 10
