"""The executors' failure paths: a worker process that dies fails its trial, as a crash, and the next
trial still runs (the local pool is replaced)."""

from __future__ import annotations

import os
from concurrent.futures.process import BrokenProcessPool

import pytest

from adaptloop.agent.executor import LocalExecutor, Trial, TrialOutcome, worker_died


def _die(trial: Trial) -> TrialOutcome:
    os._exit(9)  # what an out-of-memory kill looks like from the pool


def _ok(trial: Trial) -> TrialOutcome:
    return TrialOutcome(trial.node_id, "done", notes=f"pid {os.getpid()}")


def _trial(node_id: int, runner) -> Trial:
    return Trial(root="/nowhere", run_id=1, node_id=node_id, name=f"n{node_id}", pipeline={}, deadline=0.0,
                 make_trainer=print, runner=runner)


def test_a_dead_local_worker_fails_its_trial_as_a_crash_and_the_next_trial_runs():
    ex = LocalExecutor(workers=1)
    try:
        with pytest.raises(BrokenProcessPool) as crash:
            ex.submit(_trial(1, _die)).result(timeout=120)
        assert worker_died(crash.value)
        assert ex.submit(_trial(2, _ok)).result(timeout=120).status == "done"
    finally:
        ex.shutdown()
    assert not worker_died(ValueError("a pipeline's own error"))
