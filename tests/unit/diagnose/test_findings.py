"""Diagnosis findings, pure cases: the objects, per-class numbers, thresholds, fit_gap on constructed
curves, slices. (Real cases, where a frozen MiniLM + logistic-regression head is trained on banking77
intents with a planted defect: tests/integration/test_findings.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence

import pytest

from adaptloop.diagnose.findings import (
    Diagnosis,
    Finding,
    class_errors,
    confusable_pairs,
    diagnose,
    fit_gap,
    label_noise,
    per_class,
    slices,
)


def row(i: int, label: str, pred: str, text: str = "some words here", confidence: float = 0.9) -> dict:
    return {"id": f"r{i}", "text": text, "label": label, "pred": pred, "confidence": confidence}


def rows_from(pairs: Sequence[tuple[str, str]]) -> list[dict]:
    return [row(i, gold, pred) for i, (gold, pred) in enumerate(pairs)]


# ---------------------------------------------------------------- pure: objects and per-class numbers


def test_finding_rejects_unknown_kind_intervention_and_severity():
    with pytest.raises(ValueError, match="kind"):
        Finding("confusion", "s", 0.5)
    with pytest.raises(ValueError, match="interventions"):
        Finding("overfit", "s", 0.5, suggests=("early-stop",))
    with pytest.raises(ValueError, match="severity"):
        Finding("overfit", "s", 1.5)


def test_diagnosis_sorts_and_selects():
    low = Finding("slice", "low", 0.1, {"slice": "short"})
    high = Finding("overfit", "high", 0.8)
    mid = Finding("slice", "mid", 0.4, {"slice": "long"})
    d = Diagnosis((low, high, mid), n=10, errors=3)
    assert d.findings == (high, mid, low)
    assert d.top() is high and d.top("slice") is mid and d.top("label_noise") is None
    assert d.of_kind("slice") == [mid, low]


def test_round_trip_through_json_keeps_every_field():
    rows = rows_from([("a", "b")] * 3 + [("b", "a")] * 2 + [("a", "a")] * 5)
    issues = [{"id": "t1", "label": "a", "suggested": "b"}, {"id": "t2", "label": "b", "suggested": "a"}]
    d = diagnose(rows, ["a", "b"], curve=[{"C": 10.0, "dev_accuracy": 0.5, "train_accuracy": 1.0}],
                 label_issues=issues, n_train=40)
    assert {f.kind for f in d.findings} >= {"confusable_pair", "overfit", "label_noise"}
    again = Diagnosis.from_dict(json.loads(json.dumps(d.to_dict())))
    assert again == d
    assert all(isinstance(f.suggests, tuple) for f in again.findings)


def test_per_class_counts():
    rows = rows_from([("a", "a"), ("a", "b"), ("b", "b"), ("b", "b"), ("c", "b")])
    stats = per_class(rows, ["a", "b", "c"])
    assert stats["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2, "predicted": 1}
    assert stats["b"]["precision"] == 0.5 and stats["b"]["recall"] == 1.0 and stats["b"]["predicted"] == 4
    assert stats["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0}


def test_module_imports_no_heavy_library():
    code = ("import sys, adaptloop.diagnose.findings; "
            "print(sorted(m for m in ('torch', 'numpy', 'cleanlab', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- pure: thresholds


def test_pairs_are_unordered_ranked_and_need_min_errors():
    rows = rows_from([("a", "b")] * 2 + [("b", "a")] * 2 + [("c", "d")] * 3 + [("e", "f")] + [("a", "a")] * 12)
    found = confusable_pairs(rows)
    assert [f.target["labels"] for f in found] == [["a", "b"], ["c", "d"]]  # e/f: one error is not a pair
    assert found[0].severity == pytest.approx(4 / 8)
    assert found[0].evidence["a_as_b"] == 2 and found[0].evidence["b_as_a"] == 2
    assert confusable_pairs(rows, top=1) == found[:1]


def test_evidence_keeps_the_ten_most_confident_mistakes():
    rows = [row(i, "a", "b", confidence=i / 20) for i in range(15)]
    [f] = confusable_pairs(rows)
    assert f.evidence["example_ids"] == [f"r{i}" for i in range(14, 4, -1)]


def test_class_errors_ignore_one_or_two_stray_predictions():
    # "x" never occurs but is predicted twice: a skew, but too small to be a finding
    rows = rows_from([("a", "x")] * 2 + [("a", "a")] * 10 + [("b", "b")] * 10)
    assert class_errors(rows, ["a", "b", "x"]) == []
    # "b" is predicted 14 times for 10 occurrences: 4 extra, but under 1.5x, so a big class is not flagged
    assert class_errors(rows_from([("b", "b")] * 10 + [("a", "b")] * 4 + [("a", "a")] * 20), ["a", "b"]) == []
    rows = rows_from([("a", "x")] * 4 + [("a", "a")] * 8 + [("b", "b")] * 10)
    assert [(f.kind, f.target) for f in class_errors(rows, ["a", "b", "x"])] == [
        ("over_prediction", {"label": "x"}), ("under_prediction", {"label": "a"})]


def test_label_noise_groups_unordered_pairs():
    issues = ([{"id": f"a{i}", "label": "a", "suggested": "b"} for i in range(5)]
              + [{"id": f"b{i}", "label": "b", "suggested": "a"} for i in range(3)]
              + [{"id": "c0", "label": "c", "suggested": "a"}])
    found = label_noise(issues, n_train=100, n_classes=10)
    assert [f.target for f in found] == [{"labels": ["a", "b"]}]  # a single c/a flag is not a pair
    assert found[0].evidence["count"] == 8 and found[0].evidence["a_as_b"] == 5
    assert found[0].severity == pytest.approx(8 / 20)  # of the pair's expected 2 * 100 / 10 examples
    assert found[0].suggests == ("clean",)
    assert label_noise([], n_train=100) == []


# ---------------------------------------------------------------- pure: fit_gap on constructed curves


def steps(devs: Sequence[float], **extra) -> list[dict]:
    return [{"step": 10 * i, "epoch": i / 4, "dev_accuracy": d, "train_loss": 2.0 / (i + 1), **extra}
            for i, d in enumerate(devs)]


def test_fit_gap_overfit_when_dev_peaks_then_falls():
    curve = steps([0.40, 0.80, 0.90, 0.86, 0.84])
    [f] = fit_gap(curve, dev_accuracy=0.90)
    assert f.kind == "overfit" and f.suggests == ("fewer-epochs", "lower-lr")
    assert f.severity == pytest.approx(0.06) and f.evidence["peak"] == {"step": 20, "dev_accuracy": 0.90}


def test_fit_gap_overfit_from_train_dev_gap_on_a_c_grid():
    grid = [{"C": 3.0, "dev_accuracy": 0.70, "train_accuracy": 0.90},
            {"C": 10.0, "dev_accuracy": 0.72, "train_accuracy": 1.00},
            {"C": 30.0, "dev_accuracy": 0.71, "train_accuracy": 1.00}]
    [f] = fit_gap(grid, dev_accuracy=0.72)
    assert f.kind == "overfit" and f.severity == pytest.approx(0.28)  # train accuracy of the best-dev C
    # an explicit train accuracy overrides the curve's
    assert [f.kind for f in fit_gap(grid, dev_accuracy=0.72, train_accuracy=0.80)] == ["underfit"]


def test_fit_gap_underfit_when_still_rising_or_train_low():
    [f] = fit_gap(steps([0.30, 0.50, 0.62, 0.71]), dev_accuracy=0.71)
    assert f.kind == "underfit" and f.suggests == ("more-epochs", "finetune", "larger-encoder")
    assert f.severity == pytest.approx(0.09)
    [f] = fit_gap(steps([0.55, 0.60, 0.60, 0.60], train_accuracy=0.65), dev_accuracy=0.60)
    assert f.kind == "underfit" and f.severity == pytest.approx(0.35)


def test_fit_gap_silent_on_healthy_empty_or_short_curves():
    healthy = steps([0.50, 0.85, 0.90, 0.905, 0.90, 0.905], train_accuracy=0.97)
    assert fit_gap(healthy, dev_accuracy=0.905) == []
    assert fit_gap([], dev_accuracy=0.9) == []
    assert fit_gap(steps([0.3, 0.9]), dev_accuracy=0.9) == []  # two points: no shape yet
    assert diagnose(rows_from([("a", "a")] * 5), ["a"]).findings == ()  # no curve: fit_gap is skipped


# ---------------------------------------------------------------- pure: slices


def test_slice_needs_a_higher_error_rate_than_overall():
    short, full = "card not working", "my card was declined at the shop this morning"
    even = [row(i, "a", "b" if i % 4 == 0 else "a", short if i < 20 else full) for i in range(60)]
    assert slices(even) == []  # short inputs err as often as the rest (1 in 4)
    worse = [row(i, "a", "b" if (i < 20 and i % 2 == 0) or i % 8 == 0 else "a", short if i < 20 else full)
             for i in range(60)]
    [f] = slices(worse)
    assert f.target == {"slice": "short"} and f.evidence["size"] == 20 and f.evidence["errors"] == 10
