"""Diagnosis of an extraction model: over-prediction, spurious entities, boundary and type errors."""

from __future__ import annotations

from adaptloop.diagnose.entities import diagnose_entities, entity_errors


def _row(i, text, gold, pred):
    return {"id": f"r{i}", "text": text, "gold": [list(g) for g in gold], "pred": [[*p, 0.9] for p in pred]}


def test_diagnosis_names_over_prediction_and_spurious_entities():
    rows = [_row(i, "Ann went home", [(0, 3, "PER")], [(0, 3, "PER"), (9, 13, "PER")]) for i in range(4)]
    rows += [_row(10 + i, "it is raining", [], [(0, 2, "PER")]) for i in range(4)]
    rows += [_row(20 + i, "Rome and Oslo", [(0, 4, "LOC"), (9, 13, "LOC")], [(0, 4, "ORG")]) for i in range(3)]
    d = diagnose_entities(rows, ["PER", "LOC", "ORG"])
    kinds = {(f.kind, f.target.get("label")) for f in d.findings}
    assert ("over_prediction", "PER") in kinds and ("spurious_entities", None) in kinds
    assert ("under_prediction", "LOC") in kinds
    confusion = d.top("type_confusion")
    assert confusion.evidence["gold"] == "LOC" and confusion.evidence["pred"] == "ORG"
    over = next(f for f in d.findings if f.kind == "over_prediction")
    assert over.evidence["false_positives"] == 8 and "negatives" in over.suggests
    errs = entity_errors(rows)
    assert errs["spurious"] == 8 and errs["empty_with_predictions"] == 4


def test_diagnosis_separates_boundary_from_type_errors():
    rows = [_row(i, "Ann Lee sang", [(0, 7, "PER")], [(0, 3, "PER")]) for i in range(3)]
    d = diagnose_entities(rows, ["PER"])
    assert d.top("boundary_errors").evidence["count"] == 3 and d.top("type_confusion") is None
