"""The regression gate: breaks judged against fixes on the same examples, the noise rule, the ratchet
over every binding set, and extraction gates counted in entities."""

import numpy as np
import pytest

from adaptloop.evaluate.gate import compare, gate, paired_bootstrap
from adaptloop.types import TaskSpec

SPEC = TaskSpec(name="t", family="classification", labels=("a", "b", "c"), primary_metric="accuracy", prompt="")


def rows(gold, pred):
    return [{"id": str(i), "text": f"text {i}", "label": g, "pred": p} for i, (g, p) in enumerate(zip(gold, pred))]


def test_breaks_are_judged_against_fixes_on_the_same_examples():
    gold = ["a"] * 50 + ["b"] * 50
    inc = rows(gold, gold[:90] + ["c"] * 10)  # 90 right
    cand = rows(gold, ["c"] * 3 + gold[3:])  # fixes the last 10, breaks the first 3
    r = compare(SPEC, "e1", inc, cand, epsilon=2)
    assert [b["id"] for b in r.broken] == ["0", "1", "2"] and r.fixed == 10
    # 13 discordant examples, 3 of them breaks: P(X <= 3 | 13, 1/2) = 0.046 -> fixes outnumber breaks
    assert r.passed and abs(r.p_breaks - 0.0461) < 1e-3
    assert "breaks 3 examples" in r.notes[0] and "fixes outnumber breaks" in r.notes[0]
    # as many breaks as fixes never passes, however many there are
    churn = rows(gold, ["c"] * 10 + gold[10:])  # breaks 10, fixes 10
    r = compare(SPEC, "e1", inc, churn, epsilon=2)
    assert not r.passed and r.p_breaks > 0.5 and "do not clearly outnumber" in r.reasons[0]
    # too few discordant examples to test: epsilon, or no more breaks than fixes
    few = rows(gold, ["c"] * 3 + gold[3:90] + ["c"] * 7 + gold[97:])  # breaks 3, fixes 3
    r = compare(SPEC, "e1", inc, few, epsilon=2)
    assert r.passed and r.p_breaks is None and "no more than it fixes" in r.notes[0]
    worse = rows(gold, ["c"] * 3 + gold[3:91] + ["c"] * 9)  # breaks 3, fixes 1
    r = compare(SPEC, "e1", inc, worse, epsilon=2)
    assert not r.passed and "too few to test" in r.reasons[0] and "more than it fixes" in r.reasons[0]
    assert compare(SPEC, "e1", inc, worse, epsilon=3).passed
    one = rows(gold, ["c"] + gold[1:90] + ["c"] * 10)  # breaks 1, fixes 0: the set passes, the gain rule does not
    assert compare(SPEC, "e1", inc, one, epsilon=2).passed
    assert not gate(SPEC, [("e1", inc, one)], epsilon=2).passed


def test_broken_examples_whose_label_the_data_doubts_weigh_less():
    gold = ["a"] * 50 + ["b"] * 50
    inc = rows(gold, gold[:92] + ["c"] * 8)
    cand = rows(gold, ["c"] * 6 + gold[6:])  # breaks 6, fixes 8: P(X <= 6 | 14, 1/2) = 0.395
    assert not compare(SPEC, "e", inc, cand, epsilon=2).passed
    r = compare(SPEC, "e", inc, cand, epsilon=2, doubted=frozenset({"0", "1"}))  # 5 of 13: 0.291
    assert r.passed and r.weighted_broken == 5.0 and len(r.broken) == 6 and "weighted 5" in r.notes[0]


def test_gate_refuses_a_candidate_worse_beyond_noise_and_passes_a_tie():
    gold = ["a", "b"] * 100
    inc = rows(gold, gold)
    worse = rows(gold, gold[:150] + ["c"] * 50)
    lo, hi = paired_bootstrap(SPEC, inc, worse)
    assert hi < 0
    r = compare(SPEC, "e", inc, worse, epsilon=100)
    assert not r.passed and "worse beyond noise" in r.reasons[-1]
    assert compare(SPEC, "e", inc, rows(gold, gold), epsilon=0).passed


def test_the_extraction_bootstrap_sums_row_counts_and_matches_recomputing_the_metric():
    from adaptloop.evaluate.metrics import primary
    from adaptloop.evaluate.rows import metrics_of

    spec = TaskSpec(name="t", family="extraction", labels=("PER", "LOC"), primary_metric="f1", prompt="")
    rng = np.random.default_rng(1)
    inc, cand = [], []
    for i in range(80):
        gold = [[0, 3, "PER"]] if i % 3 else [[0, 3, "PER"], [8, 12, "LOC"]]
        inc.append({"id": str(i), "text": "Ann in big Oslo", "gold": gold,
                    "pred": [list(sp) + [0.9] for sp in gold if rng.random() < 0.8]})
        cand.append({"id": str(i), "text": "Ann in big Oslo", "gold": gold,
                     "pred": [list(sp) + [0.9] for sp in gold if rng.random() < 0.6]})
    lo, hi = paired_bootstrap(spec, inc, cand, n_boot=200, seed=3)
    idx = np.random.default_rng(3).integers(0, 80, size=(200, 80))
    def f1(rows):
        return primary(metrics_of(spec, rows), "f1")

    slow = [f1([cand[i] for i in ix]) - f1([inc[i] for i in ix]) for ix in idx]
    assert (lo, hi) == pytest.approx(tuple(np.quantile(slow, [0.025, 0.975])))
    assert hi < 0  # the candidate finds fewer entities: worse beyond noise


def test_gate_needs_every_eval_set_the_ratchet():
    gold = ["a", "b", "c"] * 20
    good, bad = rows(gold, gold), rows(gold, ["a"] * 60)
    g = gate(SPEC, [("current", good, good), ("checkpoint-1", good, bad)], epsilon=2)
    assert not g.passed and g.sets[0].passed and not g.sets[1].passed
    assert all("checkpoint-1" in r for s in g.sets for r in s.reasons)
    assert not g.pooled.passed  # the two pooled: worse beyond noise too
    with pytest.raises(ValueError):
        compare(SPEC, "e", good, list(reversed(good)))



def test_a_fresh_checkpoint_binds_on_the_noise_rule_only():
    gold = ["a", "b"] * 100
    inc = rows(gold, gold[:150] + ["c"] * 50)
    better = rows(gold, ["c"] * 5 + gold[5:])  # breaks 5 the incumbent got right, fixes 50
    current = rows(["a"] * 20, ["a"] * 20)
    g = gate(SPEC, [("current", current, current)], epsilon=2, fresh=[("fresh", inc, better)])
    assert g.passed and len(g.sets) == 2 and len(g.sets[1].broken) == 5
    worse = rows(gold, gold[:100] + ["c"] * 100)
    g = gate(SPEC, [("current", current, current)], epsilon=2, fresh=[("fresh", inc, worse)])
    assert not g.passed and "worse beyond noise" in g.reasons[0]


def test_the_noise_rule_also_binds_on_every_binding_set_pooled():
    gold = ["a", "b"] * 20
    inc = rows(gold, gold)
    worse = rows(gold, ["c"] * 3 + gold[3:])  # 3 of 40 lost: within noise on one set
    assert compare(SPEC, "one", inc, worse, epsilon=None).passed
    sets = [(f"set-{k}", inc, worse) for k in range(4)]  # the same loss on 160 examples is not noise
    g = gate(SPEC, sets, epsilon=10)
    assert not g.passed and all("worse beyond noise" not in r for s in g.sets for r in s.reasons)
    pooled = [r for r in g.reasons if "pooled (4 binding sets)" in r]
    assert g.pooled is not None and g.pooled.n == 160 and pooled and "worse beyond noise" in pooled[0]
    assert g.to_dict()["pooled"]["n"] == 160
    assert gate(SPEC, sets[:1], epsilon=10).pooled is None  # one set: nothing to pool
    same = gate(SPEC, [(f"set-{k}", inc, inc) for k in range(4)], epsilon=0)
    assert all(s.passed for s in same.sets) and same.pooled.passed and same.reasons == [same.gain]


def test_a_candidate_must_fix_more_than_it_breaks_over_every_set_together():
    gold = ["a", "b"] * 50
    inc = rows(gold, gold[:90] + ["c"] * 10)
    tie = rows(gold, ["c"] * 2 + gold[2:92] + ["c"] * 8)  # breaks 2, fixes 2: every per-set rule passes
    fresh_inc = rows(["a"] * 20, ["a"] * 18 + ["b"] * 2)
    g = gate(SPEC, [("current", inc, tie)], epsilon=2, fresh=[("fresh", fresh_inc, fresh_inc)])
    assert all(s.passed for s in g.sets) and not g.passed and not g.gained
    assert "fixes 2 units and gets 2 wrong" in g.reasons[0] and "no measured gain" in g.reasons[0]
    better_fresh = rows(["a"] * 20, ["a"] * 20)  # the gain shows on this cycle's checkpoint
    g = gate(SPEC, [("current", inc, tie)], epsilon=2, fresh=[("fresh", fresh_inc, better_fresh)])
    assert g.passed and g.gained and "a measured gain" in g.notes[-1]


def test_an_extraction_gate_counts_broken_entities_not_sentences():
    spec = TaskSpec(name="ner", family="extraction", labels=("PER", "LOC"), primary_metric="f1", prompt="")
    gold = [[0, 4, "PER"], [10, 15, "LOC"], [20, 24, "PER"]]
    miss_first = [[0, 4, "LOC"], [10, 15, "LOC"], [20, 24, "PER"]]

    def row(i, pred):
        return {"id": str(i), "text": "Anna went Paris and Bert", "gold": gold, "pred": pred}

    # the incumbent is never wholly right (a spurious span), so no sentence can break; entities do
    inc = [row(i, gold + [[5, 9, "LOC"]]) for i in range(3)]
    cand = [row(i, miss_first) for i in range(3)]
    r = compare(spec, "e", inc, cand, epsilon=2)
    assert len(r.broken) == 3 and r.fixed == 0 and "breaks 3 entities" in r.reasons[0]
    assert r.broken[0]["label"] == [0, 4, "PER"] and r.broken[0]["now"] == [[0, 4, "LOC"]]
    assert compare(spec, "e", cand, inc, epsilon=0).fixed == 3


def test_the_first_models_gate_beats_the_constant_answer_and_says_when_only_by_noise():
    from adaptloop.evaluate.gate import first_model

    clear = first_model("f1", "e", 40, 0.30, baseline=0.0, predicts="no entities", ci=(0.12, 0.45))
    weak = first_model("f1", "e", 40, 0.02, baseline=0.0, predicts="no entities", ci=(-0.01, 0.06))
    none = first_model("f1", "e", 40, 0.0, baseline=0.0, predicts="no entities", ci=(0.0, 0.0))
    assert clear.passed and len(clear.notes) == 1
    assert weak.passed and "beyond noise" in weak.notes[-1] and weak.sets[0].ci_low < 0
    assert not none.passed and none.reasons == ["no better than predicting no entities: f1 0.0000 <= 0.0000"]


def test_a_student_may_be_worse_than_its_teacher_within_its_margin_and_noise_only():
    gold = ["a", "b"] * 500  # 1,000 examples
    inc = rows(gold, gold[:900] + ["c"] * 100)
    # breaks 23, fixes 16: fixes do not outnumber breaks, but 7 of 1,000 is within a 1% margin
    student = rows(gold, ["c"] * 23 + gold[23:916] + ["c"] * 84)
    assert not compare(SPEC, "e", inc, student, epsilon=2).passed
    r = compare(SPEC, "e", inc, student, epsilon=2, margin=0.01)
    assert r.passed and "7 more broken than fixed, the margin is 1% of 1000 examples (10.0): within it" in r.notes[0]
    # beyond a 0.5% margin as measured (7 > 5), not beyond noise: a student exactly 0.5% worse breaks 23 or more
    # of 39 discordant examples with P = 0.44
    r = compare(SPEC, "e", inc, student, epsilon=2, margin=0.005)
    assert r.passed and abs(r.p_breaks - 0.439) < 0.001 and "but not beyond noise" in r.notes[0]
    # 40 broken, 10 fixed: 30 more, far beyond 5 whatever the noise
    worse = rows(gold, ["c"] * 40 + gold[40:910] + ["c"] * 90)
    r = compare(SPEC, "e", inc, worse, epsilon=2, margin=0.005)
    assert not r.passed and r.p_breaks < 0.01 and "and beyond noise" in r.reasons[0]
    # too few discordant examples to test: the margin as measured binds
    few = rows(gold, ["c"] * 7 + gold[7:900] + ["c"] * 100)  # breaks 7, fixes 0
    r = compare(SPEC, "e", inc, few, epsilon=2, margin=0.005)
    assert not r.passed and "too few to test" in r.reasons[0]
    # the gate passes the margin on to every binding set (the gain rule is the caller's to waive)
    g = gate(SPEC, [("e", inc, student)], epsilon=2, margin=0.01)
    assert g.sets[0].passed and not g.gained
