"""The executors' failure paths: a worker process that dies fails its trial, as a crash, and the next
trial still runs (the local pool is replaced). The incumbent a running trial is held to."""

from __future__ import annotations

import os
from concurrent.futures.process import BrokenProcessPool

import pytest

from adaptloop.agent.executor import (
    LocalExecutor,
    Trial,
    TrialOutcome,
    best_dev,
    live_score_path,
    publish_best,
    worker_died,
)
from adaptloop.store.db import Node, Run, Task
from adaptloop.workspace import Workspace, init_workspace


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


def test_a_running_trial_is_held_to_the_best_so_far_of_the_trials_beside_it(tmp_path):
    """Finished nodes count with their dev score; running ones with what they last published, never the
    asking trial's own; a refit (trained on dev) and a collected trial's leftover file never count."""
    ws = Workspace.open(init_workspace(tmp_path / "ws"))
    task = ws.store.add(Task(name="t", prompt="p", family="classification", spec={}))
    run = ws.store.add(Run(task_id=task.id, kind="coldstart", status="running", budget_s=60.0))

    def node(name: str, status: str, strategy: str = "finetune", dev: float | None = None) -> Node:
        return ws.store.add(Node(run_id=run.id, name=name, intervention=name, reason="",
                                 pipeline={"strategy": strategy}, status=status,
                                 dev_metrics={"accuracy": dev} if dev is not None else {}))

    node("done", "done", dev=0.6)
    left, right = node("left", "running"), node("right", "running")
    refit = node("refit", "running", strategy="refit")
    assert best_dev(ws, run.id, "accuracy", besides=left.id) == 0.6  # nothing published yet
    publish_best(ws.root, run.id, right.id, 0.8)
    publish_best(ws.root, run.id, refit.id, 0.99)
    assert best_dev(ws, run.id, "accuracy", besides=left.id) == 0.8  # the sibling leads
    assert best_dev(ws, run.id, "accuracy", besides=right.id) == 0.6  # not its own score
    publish_best(ws.root, run.id, left.id, 0.7)
    publish_best(ws.root, run.id, left.id, 0.85)  # a newer best replaces the last
    assert best_dev(ws, run.id, "accuracy", besides=right.id) == 0.85
    assert best_dev(ws, run.id, "accuracy") == 0.85
    ws.store.update(Node, left.id, status="failed")  # collected: its file no longer counts
    assert best_dev(ws, run.id, "accuracy", besides=right.id) == 0.6
    assert live_score_path(ws.root, run.id, right.id).read_text() == "0.8"
