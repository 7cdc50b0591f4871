"""Trials on a real Ray cluster: a local head with two worker CPUs started by the tests (tests/ray_cluster.py),
joined through settings (`[search] executor = "ray"`, `ray_address`). The fake trainer keeps the trials fast;
the executor, the cluster, the pickling, the artifacts and the failure path are real."""

from __future__ import annotations

import functools

import pytest

from adaptloop.agent.coldstart import cold_start
from adaptloop.agent.executor import Trial, trial_resources
from adaptloop.data.sources import load_classification
from adaptloop.store import registry
from adaptloop.train.fake import _features, fake_trainer
from adaptloop.workspace import Workspace, init_workspace
from tests.conftest import subset, write_jsonl
from tests.ray_cluster import TrialWatch


@pytest.fixture
def ray_ws(tmp_path, ray_cluster):
    ws = Workspace.open(init_workspace(tmp_path / "ws"))
    ws.settings.search.executor, ws.settings.search.ray_address = "ray", ray_cluster.address
    ws.settings.search.workers, ws.settings.train.threads = 2, 2
    ws.settings.agent.plateau_rounds = 1  # a short search: a few trials are all these tests need
    return ws


@pytest.fixture
def seed(tmp_path, banking_sample):
    return load_classification(write_jsonl(tmp_path / "seed.jsonl", subset(banking_sample, 5, 30)))


def test_a_cold_start_runs_on_ray_and_goes_on_past_a_killed_worker(ray_ws, seed):
    with TrialWatch(kill_after=0.5) as watch:
        r = cold_start(ray_ws, seed, "route banking messages", 150, embed_fn=_features,
                       make_trainer=functools.partial(fake_trainer, delay=1.5))
    nodes = {n.name: n for n in ray_ws.store.nodes(r.run_id)}
    done = [n for n in nodes.values() if n.status == "done"]
    assert {n.name for n in done} <= set(watch.seen)  # each trial ran in a Ray worker process
    for n in done:  # what the workers wrote is there for the driver
        assert ray_ws.artifacts.path(n.model_artifact).is_dir()
        assert n.pipeline["strategy"] == "refit" or ray_ws.artifacts.get_jsonl(n.predictions_artifact)
    overlaps = [(a.name, b.name) for a in done for b in done
                if a.id < b.id and b.started_at < a.finished_at and a.started_at < b.finished_at]
    assert overlaps, "no two trials ran at the same time on the two workers"
    # the killed worker failed its trial, recorded as a crash, and the search went on
    assert len(watch.killed) == 1
    victim = nodes[watch.killed[0]]
    assert victim.status == "failed" and victim.eval_metrics.get("crashed"), victim.eval_metrics
    assert "died" in victim.eval_metrics["error"].lower()
    assert any(n.started_at > victim.finished_at for n in done)
    assert r.version is not None and registry.alias_target(ray_ws.store, "production") == r.version


def _trial(strategy: str, threads: int = 1) -> Trial:
    return Trial(root="/ws", run_id=1, node_id=1, name="n", pipeline={"strategy": strategy}, deadline=0.0,
                 make_trainer=fake_trainer, threads=threads)


def test_a_trial_asks_the_cluster_for_what_its_pipeline_uses():
    assert trial_resources(_trial("finetune", 4), cluster_gpus=0) == {"num_cpus": 4.0, "num_gpus": 0.0}
    assert trial_resources(_trial("finetune"), cluster_gpus=2) == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert trial_resources(_trial("sft"), cluster_gpus=1)["num_gpus"] == 1.0
    assert trial_resources(_trial("ensemble"), cluster_gpus=2)["num_gpus"] == 0.0  # combines fitted models
    assert trial_resources(_trial("finetune"), cluster_gpus=2, device_setting="cpu")["num_gpus"] == 0.0
