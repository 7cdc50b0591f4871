"""The independent traffic generator (``bench.generate_b``) on banking77's training texts: the tests of
tests/unit/bench/test_generate_b.py that take a pool, collected here again with the ``pool`` below."""

from __future__ import annotations

import json

import pytest

from tests.conftest import DATASETS
from tests.unit.bench.test_generate_b import (  # noqa: F401  (collected here, with this module's pool)
    stages,
    test_bursts_put_one_attacker_label_on_many_logs_within_minutes,
    test_every_kind_appears_in_every_stage,
    test_feedback_of_each_kind,
    test_ids_are_unique_prefixed_and_traces_valid,
    test_injections_vary_in_placement_and_label_form,
    test_mislabels_are_mostly_systematic_flips,
    test_none_of_the_main_generators_poison_wording,
    test_poison_mix_follows_the_weights,
    test_poison_share_per_stage_is_the_rate_asked,
    test_same_format_as_the_main_generator,
    test_same_seed_same_traffic_other_seed_other_traffic,
    test_sources_do_not_follow_the_main_generators_scheme,
)

pytestmark = pytest.mark.integration


def _banking77_pool() -> list[tuple[str, str]]:
    path = DATASETS / "banking77" / "train.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    with path.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return [(r["text"], r["label"]) for r in rows]


@pytest.fixture(scope="module", params=["banking77"])
def pool(request) -> tuple[list[tuple[str, str]], list[str]]:
    items = _banking77_pool()
    return items, sorted({lab for _, lab in items})
