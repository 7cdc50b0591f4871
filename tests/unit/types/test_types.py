"""The value types: ids are content hashes."""

import json

import pytest

from adaptloop.types import EvalSet, Example


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


def test_example_ids_cover_spans():
    a = Example("Bob ran", "PER", spans=((0, 3, "PER"),))
    b = Example("Bob ran", "PER", spans=((0, 3, "ORG"),))
    assert a.id != b.id
    assert Example.from_dict(json.loads(json.dumps(a.to_dict()))) == a
