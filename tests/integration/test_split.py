"""Group splits on presidio_pii, whose records carry the template they were made from."""

import pytest

from adaptloop.data.sources import load_extraction
from adaptloop.data.split import group_split, grouped, held_out_split
from tests.conftest import DATASETS

pytestmark = pytest.mark.integration


def test_group_split_holds_whole_groups_and_keeps_every_type():
    ex = list(load_extraction(DATASETS / "presidio_pii" / "train.jsonl").examples)
    assert grouped(ex) and all(e.group for e in ex)  # template_id is read as the group
    held, rest, how = held_out_split(ex, fraction=0.1, seed=0)
    assert how == "group"
    assert not {e.group for e in held} & {e.group for e in rest}  # no template on both sides
    assert abs(len(held) - 0.1 * len(ex)) <= 0.1 * 0.1 * len(ex) + 12
    assert {s[2] for e in ex for s in e.spans} == {s[2] for e in rest for s in e.spans}
    again, _ = group_split(list(reversed(ex)), fraction=0.1, seed=0)
    assert [e.id for e in again] == [e.id for e in held]  # content and seed decide, not order
