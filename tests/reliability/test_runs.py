"""Runs that cannot go on: refused before anything is written, or marked failed — never left "running"."""

import json

import pytest
from sqlalchemy import select

from adaptloop.agent.coldstart import cold_start, resumable_run
from adaptloop.data.sources import load_classification
from adaptloop.errors import DataError, LabelError, NotFoundError, RunFailed
from adaptloop.store.db import Decision, Node, Run, Task
from adaptloop.train.fake import FakeTrainer
from adaptloop.workspace import Workspace, init_workspace
from tests.conftest import subset, write_jsonl


@pytest.fixture
def ws(tmp_path):
    w = Workspace.open(init_workspace(tmp_path / "ws"))
    w.settings.search.workers = 1
    return w


def rows_per_class(n: int, classes: str = "abcdef") -> list[dict]:
    return [{"text": f"message {i} about topic {c} number {i}", "label": c} for c in classes for i in range(n)]


@pytest.mark.parametrize("n, words", [(1, "0 of 6 classes have the 3 examples"), (2, "0 of 6 classes")])
def test_too_few_examples_per_class_is_refused_before_anything_is_written(ws, tmp_path, n, words):
    data = write_jsonl(tmp_path / "d.jsonl", rows_per_class(n))
    with pytest.raises(DataError, match=words):
        cold_start(ws, load_classification(data), "route messages", 30, make_trainer=lambda s: FakeTrainer(),
                   embed_fn=None)
    assert ws.store.all(select(Task)) == [] and ws.store.all(select(Run)) == []


def test_a_gold_file_with_labels_the_training_data_lacks_is_refused(ws, tmp_path):
    train = write_jsonl(tmp_path / "t.jsonl", rows_per_class(6, "abc"))
    gold = write_jsonl(tmp_path / "g.jsonl", rows_per_class(3, "abz"))
    with pytest.raises(LabelError, match="lacks .*z"):
        cold_start(ws, load_classification(train), "route messages", 30, make_trainer=lambda s: FakeTrainer(),
                   embed_fn=None, gold=load_classification(gold))
    assert ws.store.all(select(Run)) == []


class Exploding(FakeTrainer):
    def fit(self, *args, **kwargs):
        raise MemoryError("out of memory in the middle of a fit")


def test_an_error_inside_the_search_marks_the_run_failed(ws, tmp_path, banking_sample):
    data = write_jsonl(tmp_path / "d.jsonl", subset(banking_sample, 4, 12))
    calls = {"n": 0}

    def trainer(_strategy):
        calls["n"] += 1
        return Exploding()

    def boom(self, _ws, _run):  # an error outside any trial: the search itself fails
        raise RuntimeError("the disk went away")

    from adaptloop.agent.families import Labelled

    original = Labelled.data
    Labelled.data = boom
    try:
        with pytest.raises(RunFailed, match="run 1 failed .*the disk went away.*nothing was promoted"):
            cold_start(ws, load_classification(data), "route banking", 30, make_trainer=trainer, embed_fn=None)
    finally:
        Labelled.data = original
    run = ws.store.get(Run, 1)
    assert run.status == "failed" and run.finished_at is not None
    kinds = [d.kind for d in ws.store.all(select(Decision).where(Decision.run_id == 1))]
    assert kinds[-1] == "failed"
    assert all(n.status != "running" for n in ws.store.all(select(Node)))
    with pytest.raises(NotFoundError):  # a failed run is not offered for --resume
        resumable_run(ws)


def test_a_failing_trainer_fails_its_node_not_the_run(ws, tmp_path, banking_sample):
    data = write_jsonl(tmp_path / "d.jsonl", subset(banking_sample, 4, 12))
    r = cold_start(ws, load_classification(data), "route banking", 20, make_trainer=lambda s: Exploding(),
                   embed_fn=None)
    assert r.version is None
    assert ws.store.get(Run, r.run_id).status == "done"
    assert {n.status for n in ws.store.all(select(Node))} == {"failed"}
    assert json.dumps(r.to_dict())  # the result still renders


def test_resume_never_picks_an_improve_cycle(ws):
    task = ws.store.add(Task(name="t", prompt="p", family="classification", spec={}))
    ws.store.add(Run(task_id=task.id, kind="improve", budget_s=60, status="running", state={}))
    with pytest.raises(NotFoundError, match="no interrupted run"):
        resumable_run(ws)
