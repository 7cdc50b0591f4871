"""The portfolio prior shipped with the package: weighted by how alike a task is, refined by the workspace."""

import pytest

from adaptloop.agent.doctrine import DoctrinePolicy
from adaptloop.search import portfolio
from tests.unit.search.test_search import node, state


def outcome(dataset, n_train, n_classes, intervention, gain, family="classification", cost_s=100.0):
    return {"family": family, "dataset": dataset, "n_train": n_train, "n_classes": n_classes,
            "encoder": "small-enc", "intervention": intervention, "gain": gain, "cost_s": cost_s,
            "source": f"coldstart-{dataset}.json#node2"}


@pytest.fixture
def shipped(monkeypatch):
    rows = (outcome("big", 10000, 77, "larger-encoder", 0.02), outcome("big", 10000, 77, "larger-encoder", 0.01),
            outcome("big", 10000, 77, "finetune", -0.01), outcome("near", 15000, 150, "finetune", 0.03),
            outcome("tagging", 3000, 6, "larger-encoder", -0.3, family="extraction"))
    monkeypatch.setattr(portfolio, "outcomes", lambda: rows)
    return rows


def test_the_prior_weighs_each_outcome_by_how_alike_its_task_is(shipped):
    table, used = portfolio.prior("classification", 10000, 77)
    assert used == ["big", "near"]  # the same task weighs most; the other family never counts
    n, gain, _ = table["larger-encoder"]
    assert n == pytest.approx(2.0) and gain == pytest.approx(0.015)
    n, gain, _ = table["finetune"]  # one outcome on the same task, one on a task ~1.5x as large with 2x the classes
    assert 1.0 < n < 2.0 and -0.01 < gain < 0.03
    assert portfolio.prior("classification", 40, 3) == ({}, [])  # a toy task: nothing alike, no prior
    assert portfolio.prior("extraction", 3000, 6)[0]["larger-encoder"][1] == pytest.approx(-0.3)


def test_the_workspace_outcomes_take_over_the_prior_as_they_accumulate():
    prior = {"finetune": (portfolio.PRIOR_CAP, 0.02, 200.0)}
    assert portfolio.blend(prior, {}) == prior
    own = {"finetune": (9, -0.01, 100.0), "clean": (1, 0.005, 10.0)}
    blended = portfolio.blend(prior, own)
    assert blended["finetune"][0] == 12 and blended["finetune"][1] == pytest.approx((3 * 0.02 - 9 * 0.01) / 12)
    assert blended["finetune"][1] < 0 and blended["clean"] == (1, 0.005, 10.0)


def test_the_prior_counts_as_at_most_a_few_outcomes(monkeypatch):
    monkeypatch.setattr(portfolio, "outcomes", lambda: tuple(outcome("big", 10000, 77, "ensemble", 0.01)
                                                              for _ in range(40)))
    assert portfolio.prior("classification", 10000, 77)[0]["ensemble"][0] == portfolio.PRIOR_CAP


def test_a_fresh_workspace_starts_from_what_paid_off_on_a_similar_task(shipped):
    nodes = [node("baseline", 0.80)]  # mid regime: the model family first, finetune and larger-encoder tie
    plain = DoctrinePolicy().propose(state(nodes, n_train=10000, n_classes=77))
    table, _ = portfolio.prior("classification", 10000, 77)
    warm = DoctrinePolicy().propose(state(nodes, n_train=10000, n_classes=77, learned=table))
    assert plain.move == "finetune" and warm.move == "larger-encoder"


def test_the_shipped_portfolio_has_its_provenance():
    rows = portfolio.outcomes()
    assert rows, "adaptloop/search/portfolio.json is missing: run benchmarks/portfolio.py"
    assert {"classification", "extraction"} <= {o["family"] for o in rows}
    for o in rows:
        assert o["source"].split("#")[0].split("/")[0].endswith(".json") and o["n_train"] > 0 and o["n_classes"] > 1
