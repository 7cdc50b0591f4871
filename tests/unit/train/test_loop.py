"""The shared update loop: the plan fits the trial's own deadline; a cutoff the search moves sooner after
the trial started stops it without shrinking its plan (the time may come back)."""

from __future__ import annotations

import time

import torch

from adaptloop.train.base import FitContext
from adaptloop.train.loop import REPLAN_AT, UpdatePlan


def _plan(ctx: FitContext, total: int = 10_000) -> UpdatePlan:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    plan = UpdatePlan(opt, total=total, steps_per_epoch=100, eval_every=10**9, ctx=ctx, warmup=0.1, patience=3)
    plan.start(0.5)
    plan.opt = opt
    return plan


def _run(plan: UpdatePlan, steps: int) -> None:
    for _ in range(steps):
        time.sleep(0.002)
        plan.opt.step()
        plan.updated(0.0)


def test_the_plan_fits_the_deadline_and_a_sooner_cutoff_only_stops_the_fit():
    cut = [float("inf")]
    ctx = FitContext(deadline=time.monotonic() + 5.0, cutoff=lambda: cut[0])
    plan = _plan(ctx)
    cut[0] = time.monotonic() + 0.5  # the search keeps time back after the fit started
    t = time.monotonic()
    _run(plan, REPLAN_AT)
    per_step = (time.monotonic() - t) / REPLAN_AT
    fitted = plan.total
    assert REPLAN_AT < fitted < 10_000 and fitted * per_step > 2.0  # sized to the 5 s deadline, not the 0.5 s cutoff
    assert not plan.done()
    time.sleep(0.6)
    assert plan.done() and plan.stop == "deadline reached" and plan.total == fitted


def test_a_cutoff_that_comes_back_lets_the_fit_run_its_plan():
    cut = [time.monotonic() - 1.0]
    plan = _plan(FitContext(deadline=time.monotonic() + 60.0, cutoff=lambda: cut[0]), total=REPLAN_AT + 2)
    _run(plan, REPLAN_AT)
    assert plan.done() and plan.stop == "deadline reached"  # the cutoff passed: stopped
    cut[0] = float("inf")
    plan = _plan(FitContext(deadline=time.monotonic() + 60.0, cutoff=lambda: cut[0]), total=REPLAN_AT + 2)
    _run(plan, REPLAN_AT + 2)
    assert plan.done() and plan.stop.startswith("planned")
