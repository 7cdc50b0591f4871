"""Curation: duplicates, near duplicates, label issues, class balance. (Eval overlap on banking77:
tests/integration/test_curate.py.)"""

import numpy as np

from adaptloop.data import curate
from adaptloop.types import Example


def _ex(pairs):
    return [Example(t, lab) for t, lab in pairs]


def test_exact_duplicates_keep_first_and_drop_conflicts():
    ex = _ex([("Where is my card?", "card_arrival"), ("where is my card", "card_arrival"),
              ("Top up failed", "top_up_failed"), ("top up failed!", "card_arrival"),
              ("unique", "x")])
    drops = curate.find_exact_duplicates(ex)
    by_reason = {d.index: d.reason for d in drops}
    assert by_reason == {1: "exact_duplicate", 2: "conflicting_duplicate",
                         3: "conflicting_duplicate"}
    assert [e.text for e in curate.apply_drops(ex, drops)] == ["Where is my card?", "unique"]


def test_near_duplicates_found_and_distinct_texts_kept():
    ex = _ex([("I am still waiting on my new card to arrive", "card_arrival"),
              ("I am still waiting on my new card to arrive.!", "card_arrival"),
              ("I am still waiting on my new card to arrive pls", "card_arrival"),
              ("How do I change my PIN number?", "change_pin")])
    drops = curate.find_near_duplicates(ex, threshold=0.8)
    assert {d.index for d in drops} >= {1}
    assert 0 not in {d.index for d in drops} and 3 not in {d.index for d in drops}


def test_label_issues_found_on_flipped_labels():
    rng = np.random.default_rng(0)
    n, k = 400, 4
    y_true = rng.integers(0, k, n)
    probs = np.full((n, k), 0.02)
    probs[np.arange(n), y_true] = 0.94
    y_given = y_true.copy()
    flipped = rng.choice(n, 12, replace=False)
    y_given[flipped] = (y_true[flipped] + 1) % k
    drops = curate.find_label_issues(y_given, probs, max_fraction=0.05)
    assert {d.index for d in drops} == set(flipped.tolist())
    assert all(d.reason == "label_issue" for d in drops)


def test_class_balance_reports_small_classes():
    ex = _ex([("a", "big")] * 20 + [("b", "small")] * 2)
    rep = curate.class_balance(ex)
    assert rep["imbalance_ratio"] == 10.0 and rep["small_classes"] == ["small"]
