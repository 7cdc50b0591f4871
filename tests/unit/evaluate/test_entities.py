"""Entity metrics: exact span matches (seqeval), per-row counts that sum to the micro-F1 on any subset,
and the lenient token F1."""

from __future__ import annotations

import numpy as np
import pytest

from adaptloop.evaluate.entities import entity_counts, entity_metrics, micro_f1

GOLD = [(0, 7, "PER"), (16, 24, "LOC")]  # "Ann Lee" and "New York" in "Ann Lee flew to New York today"


def test_entity_metrics_are_exact_span_matches():
    texts = ["Ann Lee flew to New York today", "nothing here", "Bob met Sue"]
    gold = [GOLD, [], [(0, 3, "PER"), (8, 11, "PER")]]
    pred = [[(0, 3, "PER"), (16, 24, "LOC")],  # boundary error on Ann Lee, LOC exact
            [(0, 7, "ORG")],  # spurious on an entity-free sentence
            [(0, 3, "PER"), (8, 11, "LOC", 0.9)]]  # type error (scores are ignored)
    m = entity_metrics(texts, gold, pred, labels=["PER", "LOC", "ORG"])
    assert (m["n_gold"], m["n_pred"]) == (4, 5)
    assert m["precision"] == pytest.approx(2 / 5) and m["recall"] == pytest.approx(2 / 4)
    assert m["f1"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert m["per_type"]["LOC"]["precision"] == pytest.approx(0.5) and m["per_type"]["ORG"]["support"] == 0
    assert entity_metrics(texts, gold, gold)["f1"] == 1.0


def _random_rows(rng: np.random.Generator, n: int) -> tuple[list[str], list[list], list[list]]:
    """Texts of 5 words with random gold and predicted spans (exact, shifted, retyped, spurious)."""
    words = ["Ann", "met", "Bob", "in", "Oslo"]
    starts = [0, 4, 8, 11, 14]
    texts, gold, pred = [], [], []
    for _ in range(n):
        g = [(starts[i], starts[i] + len(words[i]), str(rng.choice(["PER", "LOC"])))
             for i in range(5) if rng.random() < 0.3]
        p = []
        for s, e, t in g:
            roll = rng.random()
            if roll < 0.5:
                p.append((s, e, t))
            elif roll < 0.7:
                p.append((s, e, "ORG"))
            elif roll < 0.8:
                p.append((s, e - 1, t))
        if rng.random() < 0.2 and not g:
            p.append((4, 7, "PER"))
        texts.append(" ".join(words))
        gold.append(g)
        pred.append(p)
    return texts, gold, pred


def test_entity_counts_sum_to_seqeval_micro_f1_on_any_subset():
    rng = np.random.default_rng(0)
    texts, gold, pred = _random_rows(rng, 60)
    counts = entity_counts(texts, gold, pred)
    for _ in range(20):
        ix = rng.integers(0, 60, size=int(rng.integers(1, 60)))
        want = entity_metrics([texts[i] for i in ix], [gold[i] for i in ix], [pred[i] for i in ix])["f1"]
        assert micro_f1(counts[ix].sum(axis=0)) == pytest.approx(want)
    assert micro_f1(np.zeros(3, dtype=int)) == 1.0  # nothing to find, nothing found


def test_token_f1_is_lenient_about_boundaries():
    texts = ["Ann Lee flew"]
    m = entity_metrics(texts, [[(0, 7, "PER")]], [[(0, 3, "PER")]])
    assert m["f1"] == 0.0 and m["token_f1"] == pytest.approx(2 * 1.0 * 0.5 / 1.5)
