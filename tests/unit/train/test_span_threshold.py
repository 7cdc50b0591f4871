"""Per-type span thresholds tuned on dev."""

from __future__ import annotations

from adaptloop.train.span_threshold import tune_thresholds


def test_thresholds_drop_low_confidence_spurious_spans():
    texts = ["Ann sang", "it rained", "Bob ran"]
    gold = [[(0, 3, "PER")], [], [(0, 3, "PER")]]
    preds = [[{"start": 0, "end": 3, "label": "PER", "score": 0.97}],
             [{"start": 0, "end": 2, "label": "PER", "score": 0.55}],
             [{"start": 0, "end": 3, "label": "PER", "score": 0.9}]]
    thr, f1 = tune_thresholds(texts, gold, preds, ["PER"])
    assert f1 == 1.0 and 0.55 < thr["PER"] <= 0.9


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
