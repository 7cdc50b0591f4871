"""Curation on the public data: the eval-overlap check finds banking77's known train/test leaks."""

import pytest

from adaptloop.data import curate
from adaptloop.types import Example

pytestmark = pytest.mark.integration


def test_eval_overlap_finds_the_known_banking77_leaks(banking_train, banking_test):
    # the dataset README says 6 banking77 test texts also occur in train
    train = [Example(r["text"], r["label"]) for r in banking_train]
    test = [Example(r["text"], r["label"]) for r in banking_test]
    drops = curate.find_eval_overlap(train, test, threshold=0.95)
    exact = [d for d in drops if d.detail.startswith("exact")]
    assert len(exact) >= 6
    assert all(curate.normalize_text(train[d.index].text) in
               {curate.normalize_text(t.text) for t in test} for d in exact)
