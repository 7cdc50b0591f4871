import random
from collections import Counter

import pytest

from adaptloop.data.sources import load_extraction
from adaptloop.data.split import group_split, grouped, held_out_split, stratified_split
from adaptloop.types import EvalSet, Example


def _examples(rows):
    return [Example(r["text"], r["label"]) for r in rows]


def test_stratified_split_is_deterministic_and_order_free(banking_train):
    ex = _examples(banking_train[:2000])
    held1, rest1 = stratified_split(ex, fraction=0.1, seed=0)
    shuffled = ex[:]
    random.Random(3).shuffle(shuffled)
    held2, rest2 = stratified_split(shuffled, fraction=0.1, seed=0)
    assert [e.id for e in held1] == [e.id for e in held2]
    assert {e.id for e in held1}.isdisjoint({e.id for e in rest1})
    assert len(held1) + len(rest1) == len(ex)
    held3, _ = stratified_split(ex, fraction=0.1, seed=1)
    assert {e.id for e in held3} != {e.id for e in held1}


def test_stratified_split_keeps_class_shares(banking_train):
    ex = _examples(banking_train)
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


def test_eval_set_id_is_its_content_hash():
    a = EvalSet((Example("one", "x"), Example("two", "y")))
    b = EvalSet((Example("two", "y"), Example("one", "x")))
    assert a.id == b.id
    assert EvalSet.from_dict(a.to_dict()).id == a.id
    tampered = a.to_dict()
    tampered["examples"][0]["text"] = "changed"
    tampered["examples"][0]["id"] = ""
    with pytest.raises(ValueError):
        EvalSet.from_dict(tampered)


def test_group_split_holds_whole_groups_and_keeps_every_type():
    from tests.conftest import DATASETS

    ex = list(load_extraction(DATASETS / "presidio_pii" / "train.jsonl").examples)
    assert grouped(ex) and all(e.group for e in ex)  # template_id is read as the group
    held, rest, how = held_out_split(ex, fraction=0.1, seed=0)
    assert how == "group"
    assert not {e.group for e in held} & {e.group for e in rest}  # no template on both sides
    assert abs(len(held) - 0.1 * len(ex)) <= 0.1 * 0.1 * len(ex) + 12
    assert {s[2] for e in ex for s in e.spans} == {s[2] for e in rest for s in e.spans}
    again, _ = group_split(list(reversed(ex)), fraction=0.1, seed=0)
    assert [e.id for e in again] == [e.id for e in held]  # content and seed decide, not order


def test_ungrouped_or_few_groups_fall_back_to_stratified():
    plain = [Example(f"text {i}", "ab"[i % 2]) for i in range(100)]
    few = [Example(f"text {i}", "ab"[i % 2], group=str(i % 3)) for i in range(100)]
    assert not grouped(plain) and not grouped(few)
    assert held_out_split(few, fraction=0.2, seed=0)[2] == "stratified"
    # a group whose class exists nowhere else stays in training
    ex = [Example(f"t{i}", "a", group=f"g{i % 20}") for i in range(100)] + [Example("only b", "b", group="gb")]
    held, rest = group_split(ex, fraction=0.5, seed=0)
    assert any(e.label == "b" for e in rest) and 40 <= len(held) <= 55
