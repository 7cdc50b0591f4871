import pytest

from adaptloop.agent.budget import Clock, parse_budget
from adaptloop.errors import BudgetError
from adaptloop.evaluate.metrics import classification_metrics


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("20m", 1200), ("1h30m", 5400),
                                          ("2", 120), ("1.5m", 90)])
def test_parse_budget(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["abc", "", "0m", "20x", "m20", "10m abc"])
def test_bad_budget(text):
    with pytest.raises(BudgetError, match="budget"):
        parse_budget(text)


def test_clock_carries_spent_time():
    c = Clock(100, spent=40)
    assert 59 < c.left <= 60


def test_metrics_with_out_of_scope():
    y = ["a", "a", "b", "oos", "oos"]
    p = ["a", "oos", "b", "oos", "a"]
    m = classification_metrics(y, p, labels=["a", "b", "oos"], out_of_scope_label="oos")
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["in_scope_accuracy"] == pytest.approx(2 / 3)
    assert m["oos_recall"] == pytest.approx(0.5)
    assert m["per_class"]["b"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
