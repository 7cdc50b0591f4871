"""Budgets: parsing, the clock, and the epochs a deadline cut carried into the next plan."""

import time

import numpy as np
import pytest

from adaptloop.agent.budget import Clock, parse_budget
from adaptloop.errors import BudgetError


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("20m", 1200), ("1h30m", 5400), ("10s", 10),
                                          ("1.5m", 90), ("48h", 172800)])
def test_parse_budget(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text, words", [("abc", "does not parse"), ("", "does not parse"), ("0m", "minimum"),
                                         ("20x", "does not parse"), ("m20", "does not parse"),
                                         ("10m abc", "does not parse"), ("30", "no unit; write 30s, 30m or 30h"),
                                         ("1s", "10s minimum"), ("100h", "48h maximum")])
def test_bad_budget(text, words):
    with pytest.raises(BudgetError, match=words):
        parse_budget(text)


def test_a_resumed_run_may_be_given_no_more_time():
    assert parse_budget("0s", minimum=0) == 0 and parse_budget("5m", minimum=0) == 300
    with pytest.raises(BudgetError, match="does not parse"):
        parse_budget("-5m", minimum=0)


def test_clock_carries_spent_time():
    c = Clock(100, spent=40)
    assert 59 < c.left <= 60


def test_epochs_a_deadline_cut_do_not_shrink_the_next_cycle_s_plan():
    """A fit the deadline cut short says so; a refit in the same cycle repeats its epochs, a later
    cycle (a new budget) starts again from the requested ones."""
    import time

    import torch

    from adaptloop.agent.refit import settled_pipeline
    from adaptloop.store.db import Node
    from adaptloop.train.base import FitContext
    from adaptloop.train.loop import UpdatePlan

    def plan(seconds: float) -> UpdatePlan:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)  # (the first one imports for a while)
        return UpdatePlan(opt, total=100, steps_per_epoch=20, eval_every=10**9,
                          ctx=FitContext(deadline=time.monotonic() + seconds), warmup=0.1, patience=2)

    def step(p: UpdatePlan) -> None:
        p.sched.optimizer.step()  # as a training loop does, before the schedule advances
        p.updated(0.0)

    cut = plan(1.0)
    while not cut.done():
        time.sleep(0.02)
        step(cut)
    assert cut.total < 100 and cut.chosen()["cut_by_deadline"]
    full = plan(float("inf"))
    while not full.done():
        step(full)
    assert full.chosen() == {"epochs": 5.0, "planned_steps": 100, "steps_run": 100, "cut_by_deadline": False}

    pipe = {"recipe": "raw", "strategy": "tagger", "encoder": "e", "hparams": {"epochs": 5.0}, "seed": 0}
    node = Node(name="n", pipeline=pipe, chosen=cut.chosen())
    assert settled_pipeline(node).hparams["epochs"] == cut.chosen()["epochs"] < 5.0  # the same cycle's refit
    assert settled_pipeline(node, new_budget=True).hparams["epochs"] == 5.0  # a later cycle
    settled = Node(name="n", pipeline=pipe, chosen={"epochs": 2.0, "cut_by_deadline": False})  # early stopping
    assert settled_pipeline(settled, new_budget=True).hparams["epochs"] == 2.0


def test_a_fit_still_behind_the_incumbent_at_its_checkpoint_stops_with_its_best_state():
    import torch

    from adaptloop.train.base import FitContext
    from adaptloop.train.loop import UpdatePlan

    reported: list[float] = []

    def run(incumbent: float, checkpoint: float, eval_every: int = 5) -> UpdatePlan:
        reported.clear()
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        p = UpdatePlan(opt, total=50, steps_per_epoch=10, eval_every=eval_every, warmup=0.1, patience=100,
                       ctx=FitContext(checkpoint=time.monotonic() + checkpoint, incumbent=lambda: incumbent,
                                      report=reported.append))
        p.start(0.5)
        score = iter(np.linspace(0.55, 0.95, 10))
        while not p.done():
            p.sched.optimizer.step()
            p.updated(0.0)
            if p.due():
                p.checked(float(next(score)), lambda: {"w": p.step})
        return p

    behind = run(incumbent=0.9, checkpoint=-1.0)  # past the checkpoint at once: the first dev check decides
    assert behind.step == 5 and behind.stop.startswith("trailing") and behind.best_state == {"w": 5}
    assert reported == [0.5, 0.55]  # each new best is told (the search shares it with the trials beside)
    assert run(incumbent=0.5, checkpoint=-1.0).step == 50  # ahead of the incumbent: runs its plan
    assert run(incumbent=0.9, checkpoint=3600.0).step == 50  # before the checkpoint nothing is cut
    assert run(incumbent=0.9, checkpoint=-1.0, eval_every=10**9).step == 50  # no dev checks (a refit): never
    # the incumbent is asked again after each dev check: a trial that led when it started but trails a
    # node that finished since stops at its next check
    bests = iter([0.5, 0.5, 0.99])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    p = UpdatePlan(opt, total=50, steps_per_epoch=10, eval_every=5, warmup=0.1, patience=100,
                   ctx=FitContext(checkpoint=time.monotonic() - 1, incumbent=lambda: next(bests)))
    p.start(0.5)
    while not p.done():
        p.sched.optimizer.step()
        p.updated(0.0)
        if p.due():
            p.checked(0.6 + p.step / 1000, lambda: None)
    assert p.step == 15 and "0.9900" in p.stop
