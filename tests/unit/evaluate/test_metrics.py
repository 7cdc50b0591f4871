"""Classification metrics."""

import pytest

from adaptloop.evaluate.metrics import classification_metrics


def test_metrics_with_out_of_scope():
    y = ["a", "a", "b", "oos", "oos"]
    p = ["a", "oos", "b", "oos", "a"]
    m = classification_metrics(y, p, labels=["a", "b", "oos"], out_of_scope_label="oos")
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["in_scope_accuracy"] == pytest.approx(2 / 3)
    assert m["oos_recall"] == pytest.approx(0.5)
    assert m["per_class"]["b"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
