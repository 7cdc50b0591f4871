"""The cold-start loop on real banking77 text (the sample in tests/fixtures) behind the fake trainer seam (fast)."""

import json

import numpy as np
import pytest
from sqlalchemy import select

from adaptloop.agent import coldstart
from adaptloop.agent.coldstart import ColdStart, cold_start, resumable_run
from adaptloop.data.sources import load_classification
from adaptloop.errors import LabelError, NotFoundError
from adaptloop.store import registry
from adaptloop.store.db import Decision, EvalSetRow, Node, Removal, Run, Task
from adaptloop.train.fake import FakeTrainer, _features, fake_trainer
from adaptloop.workspace import Workspace, init_workspace
from tests.conftest import subset, write_jsonl


def fake_embed(texts):
    return _features(texts)


@pytest.fixture
def ws(tmp_path):
    w = Workspace.open(init_workspace(tmp_path / "ws"))
    w.settings.search.workers = 1  # the fake trainers below are lambdas: they run inline
    return w


@pytest.fixture
def data(tmp_path, banking_sample):
    rows = subset(banking_sample, 6, 40)
    rows += rows[:5]  # exact duplicates to be removed
    rows.append({"text": rows[10]["text"], "label": rows[100]["label"]})  # conflicting copy
    labels = sorted({r["label"] for r in rows})
    for r in rows[:8]:  # planted label noise for cleanlab to find
        r["label"] = labels[-1] if r["label"] != labels[-1] else labels[0]
    p = write_jsonl(tmp_path / "train.jsonl", rows)
    with p.open("a", encoding="utf-8") as f:
        f.write("{broken json\n")
    return load_classification(p)


def test_cold_start_freezes_eval_first_and_promotes(ws, data):
    ws.settings.agent.plateau_rounds = 4  # the fake scores every frozen recipe alike
    fake = FakeTrainer()
    r = cold_start(ws, data, "route banking messages", 120, make_trainer=lambda s: fake,
                   embed_fn=fake_embed)
    store = ws.store
    ev = store.get(EvalSetRow, r.eval_set_id)
    nodes = store.nodes(r.run_id)
    assert ev.created_at < min(n.started_at for n in nodes)
    assert len(nodes) >= 3
    assert {(n.pipeline["recipe"], n.pipeline["strategy"]) for n in nodes} >= {
        ("raw", "frozen"), ("clean", "frozen")}
    assert len({n.pipeline["strategy"] for n in nodes}) >= 2
    assert all(n.reason for n in nodes) and nodes[0].parent_id is None
    assert all(n.parent_id is not None for n in nodes[1:])
    # eval set never overlaps training data
    eval_ids = {e["id"] for e in ws.artifacts.get_json(ev.artifact)["examples"]}
    run = store.get(Run, r.run_id)
    for key in ("raw", "curated", "dev"):
        ids = {row["id"] for row in ws.artifacts.get_jsonl(run.state["datasets"][key])}
        assert eval_ids.isdisjoint(ids), key
    reasons = {x.reason for x in store.all(select(Removal))}
    assert {"exact_duplicate", "conflicting_duplicate", "label_issue"} <= reasons
    # the dev-selected pipeline is refitted on train+dev, and that refit is promoted
    refit = [n for n in nodes if n.pipeline["strategy"] == "refit"]
    assert len(refit) == 1 and refit[0].dev_metrics == {}
    assert refit[0].pipeline["hparams"]["of"] == r.winner["selected_on_dev"]
    # every candidate's speed is measured after its fit, the refit's too (the report sets it against the score)
    assert all(n.texts_per_second and n.texts_per_second > 0 for n in nodes if n.status == "done")
    assert r.winner["node"] == "refit" and "eval_before_refit" in r.winner
    assert len(fake.calls[-1].to_dict()) and fake.calls[-1].recipe in ("raw", "clean", "augment", "augment+clean")
    # winner scored on the frozen eval set and promoted
    assert r.winner is not None and r.winner["eval"]["accuracy"] > 1 / 6
    prod = registry.resolve(store, "production")
    assert prod.id == r.version and prod.lineage["eval_set"] == r.eval_set_id
    kinds = [d.kind for d in store.decisions(r.run_id)]
    assert kinds.index("eval_set_frozen") < kinds.index("curation") < kinds.index("select")
    assert "quarantine" in kinds and r.stop_reason


def test_budget_stops_the_loop(ws, data, monkeypatch):
    monkeypatch.setattr(coldstart, "FINAL_RESERVE_S", 0.0)
    # each trial takes a third of the budget: whatever the machine's load, one to three fit
    r = cold_start(ws, data, "route banking messages", 3.0,
                   make_trainer=lambda s: FakeTrainer(delay=1.0), embed_fn=fake_embed)
    # the loop's own check or the policy's (nothing affordable in what is left): either way, the budget
    assert r.stop_reason == "budget spent" or r.stop_reason.startswith("no affordable intervention left")
    assert 1 <= len(r.nodes) <= 3


class InterruptOnSecond(FakeTrainer):
    def fit(self, *args, **kwargs):
        if len(self.calls) == 1:
            self.calls.append(args[1])
            raise KeyboardInterrupt
        return super().fit(*args, **kwargs)


def test_ctrl_c_leaves_a_consistent_store_and_resume_finishes(ws, data):
    trainer = InterruptOnSecond()
    with pytest.raises(KeyboardInterrupt):
        cold_start(ws, data, "route banking messages", 120, make_trainer=lambda s: trainer,
                   embed_fn=fake_embed)
    run = ws.store.all(select(Run))[0]
    assert run.status == "interrupted"
    assert [n.status for n in ws.store.nodes(run.id)] == ["done", "interrupted"]
    assert registry.versions(ws.store) == []
    run_id = resumable_run(ws)
    assert run_id == run.id
    r = ColdStart(ws, run_id, make_trainer=lambda s: FakeTrainer()).run()
    statuses = [n.status for n in ws.store.nodes(run_id)]
    assert statuses[:2] == ["done", "interrupted"] and statuses.count("done") >= 3
    assert r.version is not None and ws.store.get(Run, run_id).status == "done"
    with pytest.raises(NotFoundError):
        resumable_run(ws)


def test_resume_with_no_budget_left_promotes_the_best_node_so_far(ws, data):
    trainer = InterruptOnSecond()
    with pytest.raises(KeyboardInterrupt):
        cold_start(ws, data, "route banking messages", 120, make_trainer=lambda s: trainer, embed_fn=fake_embed)
    run_id = resumable_run(ws, budget_s=0.0)
    r = ColdStart(ws, run_id, make_trainer=lambda s: FakeTrainer()).run()
    nodes = ws.store.nodes(run_id)
    assert [n.status for n in nodes] == ["done", "interrupted"]  # nothing more was trained
    assert r.version is not None and r.winner["node"] == nodes[0].name
    assert registry.resolve(ws.store, "production").id == r.version
    resumed = next(d for d in ws.store.decisions(run_id) if d.kind == "resume")
    assert "nothing more is trained" in resumed.reason


def test_one_class_writes_nothing(ws, tmp_path):
    p = write_jsonl(tmp_path / "one.jsonl", [{"text": f"t {i}", "label": "a"} for i in range(5)])
    with pytest.raises(LabelError, match="only one class"):
        cold_start(ws, load_classification(p), "x", 60, make_trainer=lambda s: FakeTrainer(),
                   embed_fn=None)
    assert ws.store.all(select(Task)) == [] and ws.store.all(select(Decision)) == []


def test_failed_pipeline_is_recorded_not_fatal(ws, data):
    class Flaky(FakeTrainer):
        def fit(self, spec, pipeline, *a, **k):
            if len(self.calls) == 1:  # the first pipeline after the baseline
                self.calls.append(pipeline)
                raise RuntimeError("out of memory")
            return super().fit(spec, pipeline, *a, **k)

    flaky = Flaky()
    r = cold_start(ws, data, "route", 120, make_trainer=lambda s: flaky, embed_fn=fake_embed)
    failed = [n for n in ws.store.all(select(Node)) if n.status == "failed"]
    assert len(failed) == 1 and r.wall_seconds < 30  # not retried until the budget ends
    assert "out of memory" in failed[0].eval_metrics["error"]
    assert r.version is not None
    assert np.isfinite(r.winner["eval"]["accuracy"])


def _on_two_workers(ws, data, prompt, budget, delay):
    """A cold start on two worker processes whose fake trainers take ``delay`` seconds a trial."""
    import functools

    from adaptloop.agent.executor import LocalExecutor

    ex = LocalExecutor(workers=2)
    try:
        return cold_start(ws, data, prompt, budget, embed_fn=fake_embed, executor=ex,
                          make_trainer=functools.partial(fake_trainer, delay=delay))
    finally:
        ex.shutdown()


def test_trials_run_in_parallel_worker_processes(ws, data):
    r = _on_two_workers(ws, data, "route banking messages", 120, delay=0.75)
    nodes = [n for n in ws.store.nodes(r.run_id) if n.status == "done"]
    assert len(nodes) >= 3 and r.version is not None
    live = ws.root / ".adaptloop" / "live" / str(r.run_id)
    assert live.is_dir() and not list(live.iterdir())  # the workers published their dev scores; collected, gone
    overlaps = [(a.name, b.name) for a in nodes for b in nodes
                if a.id < b.id and b.started_at < a.finished_at and a.started_at < b.finished_at]
    assert overlaps, "no two trials ran at the same time"
    kinds = {d.kind for d in ws.store.decisions(r.run_id)}
    assert {"baseline", "diagnosis", "stop", "select"} <= kinds
    assert ws.store.findings(r.run_id)  # every finished node was diagnosed


def test_the_extraction_opening_starts_beside_a_baseline_that_is_still_training(ws, tmp_path):
    """A tagger baseline trains for minutes: with two workers the opening's first move (the cased tagger) starts
    beside it, not after it, held to the trailing checkpoint; the opening's ensemble starts once it is done."""
    from adaptloop.data.sources import load_extraction
    from tests.conftest import DATASETS

    rows = [json.loads(line) for line in (DATASETS / "presidio_pii" / "train.jsonl").open(encoding="utf-8")][:120]
    data = load_extraction(write_jsonl(tmp_path / "pii.jsonl", rows))
    ws.settings.agent.plateau_rounds = 1
    ws.settings.train.feature_encoder = str(tmp_path)  # a local folder counts as installed
    r = _on_two_workers(ws, data, "build me a PII detection model", 600, delay=1.0)
    nodes = {n.name: n for n in ws.store.nodes(r.run_id)}
    base, cased = nodes["baseline"], nodes["larger-encoder"]
    assert base.status == cased.status == "done", {n.name: (n.status, n.eval_metrics) for n in nodes.values()}
    assert cased.started_at < base.finished_at, "the opening waited for the baseline"
    assert "started while 'baseline' trains" in cased.reason
    # the first node has no one to trail; the cased tagger trails the baseline's running dev score
    assert cased.chosen["checkpoint"] and not base.chosen["checkpoint"]
    ensembles = [n for n in nodes.values() if n.pipeline["strategy"] == "ensemble"]
    assert ensembles and all(n.started_at >= base.finished_at for n in ensembles)
    assert "baseline" in ensembles[0].pipeline["hparams"]["member_names"]


def test_each_trial_after_the_first_is_told_the_incumbent_and_its_checkpoint(ws, data):
    """The first trial has no one to trail; later ones (refits and the opening's trained members aside; its
    frozen members too) get the best node's dev score and a checkpoint at TRIAL_SHARE of the budget after
    they start; a fit cut there is a decision."""
    import dataclasses
    import time

    from adaptloop.agent.doctrine import OPENING

    seen = []
    fake = FakeTrainer()

    class Recording:
        def fit(self, spec, pipeline, train, dev, ctx):
            seen.append((pipeline.strategy, ctx.checkpoint - time.monotonic(), ctx.incumbent(), pipeline.encoder))
            model, result = fake.fit(spec, pipeline, train, dev, ctx)
            if len(seen) == 2:  # as a fit the checkpoint stopped reports it
                result = dataclasses.replace(result, notes="trailing: best dev 0.1 below the incumbent's 0.7")
            return model, result

    r = cold_start(ws, data, "route banking messages", 120, make_trainer=lambda s: Recording(), embed_fn=fake_embed)
    first, *later = seen
    assert first[1] == float("inf") and first[2] == float("-inf")
    nodes = ws.store.nodes(r.run_id)
    refits = sum(n.pipeline["strategy"] == "refit" for n in nodes)  # a refit fits its source's pipeline
    opening = sum(d.kind == "opening" for d in ws.store.decisions(r.run_id))
    capped = [s for s in later if s[1] != float("inf")]
    free = [s for s in later if s[1] == float("inf")]
    # the opening's fine-tune (its plan is sized to the budget) runs free; its larger frozen encoder is held
    assert next(s for s in later if s[0] == "finetune") in free
    assert next(s for s in later if s[0] == "frozen" and s[3] != first[3]) in capped
    refit_fits = len(free) - 1  # a refit of an ensemble fits each of its members again
    assert opening == len(OPENING["classification"]) and len(capped) >= 2 and refits <= refit_fits <= 4 * refits
    assert all(0 < s[1] <= coldstart.TRIAL_SHARE * 120 and 0 < s[2] <= 1 for s in capped)
    best = max(n.dev_metrics["accuracy"] for n in nodes if n.dev_metrics and n.pipeline["strategy"] != "refit")
    assert max(s[2] for s in capped) <= best
    cuts = [d for d in ws.store.decisions(r.run_id) if d.kind == "cut"]
    assert len(cuts) == 1 and "trailing" in cuts[0].reason


def test_a_model_too_slow_to_serve_makes_the_search_keep_its_students_time_back(ws, data):
    """Once a node scores under [serve] min_throughput, the search holds STUDENT_SHARE of the budget (at most
    [serve] student_budget) for the distillation `new` runs after it; an improve cycle holds nothing."""
    ws.settings.serve.min_throughput = 1e12  # no model is this fast
    ws.settings.serve.student_budget = "20s"
    r = cold_start(ws, data, "route banking messages", 120, make_trainer=lambda s: FakeTrainer(),
                   embed_fn=fake_embed)
    held = [d for d in ws.store.decisions(r.run_id) if d.kind == "reserve"]
    assert len(held) == 1 and held[0].data["seconds"] == 20.0 and "min_throughput" in held[0].reason
    assert coldstart.serving_reserve(ws, 60) == coldstart.STUDENT_SHARE * 60  # the share, under student_budget
    ws.settings.serve.min_throughput = 0.0
    assert coldstart.serving_reserve(ws, 600) == 0.0


def test_the_search_leaves_the_winners_export_its_share_of_the_budget(ws):
    """With [serve] export on, what follows the search (the eval scoring, then the ONNX export and its parity
    check) has its time inside the budget: EXPORT_SHARE of it, at most EXPORT_MAX_S."""
    ws.settings.serve.export = True
    assert coldstart.export_reserve(ws, "extraction", 1200) == pytest.approx(coldstart.EXPORT_SHARE * 1200)
    assert coldstart.export_reserve(ws, "classification", 36000) == coldstart.EXPORT_MAX_S
    assert coldstart.final_reserve(ws, "classification", 1200) == pytest.approx(
        coldstart.FINAL_RESERVE_S + coldstart.EXPORT_SHARE * 1200)
    assert coldstart.export_reserve(ws, "generation", 1200) == 0.0  # a causal LM is not exported
    ws.settings.serve.export = False
    assert coldstart.final_reserve(ws, "extraction", 1200) == coldstart.FINAL_RESERVE_S


@pytest.mark.parametrize("alone", [10.0, 2e12])
def test_speeds_that_decide_what_serves_are_timed_alone_before_the_search_stops(ws, data, monkeypatch, alone):
    """A node's speed is measured in its trial, beside other trials; before the search stops (here: the
    reserve for a student ends it, 40 s: past the first node, the time left is under the final reserve + a
    node's least + the student's 10 s), its best nodes are timed again alone and it gets another round:
    still too slow, the search stops and the student keeps its time; fast enough, the reserve goes back to
    the search. Each node is timed alone once; its speed alone is stored."""
    ws.settings.serve.min_throughput = 1e12  # no model measured in a trial is this fast
    monkeypatch.setattr(coldstart, "CONTENTION", float("inf"))  # every speed measured may be contended
    monkeypatch.setattr(coldstart, "model_speed", lambda model, texts: alone)
    r = cold_start(ws, data, "route banking messages", 40, make_trainer=lambda s: FakeTrainer(),
                   embed_fn=fake_embed)
    decisions = ws.store.decisions(r.run_id)
    timed = [d for d in decisions if d.kind == "speed"]
    nodes = {n.name: n for n in ws.store.nodes(r.run_id)}
    assert timed and len({d.data["node"] for d in timed}) == len(timed)
    assert all(nodes[d.data["node"]].texts_per_second == alone for d in timed)
    stop = next(d for d in decisions if d.kind == "stop").reason
    if alone < 1e12:
        assert len(timed) == 1 and "below [serve] min_throughput" in timed[0].reason and stop == "budget spent"
        assert len(nodes) == 1
    else:
        assert all("at or above" in d.reason for d in timed) and len(nodes) > 1


def test_a_trial_ends_by_the_cutoff_the_search_moves_after_it_started(ws, data):
    """A trial's deadline is fixed when it starts; the time the search keeps back later (a student's share)
    reaches it through the cutoff it asks for whenever it asks for the time left."""
    import time

    from adaptloop.agent.executor import publish_cutoff

    seen = []

    class Moved(FakeTrainer):
        def fit(self, spec, pipeline, train, dev, ctx):
            before = ctx.seconds_left()
            run = max(ws.store.all(select(Run)), key=lambda r: r.id)
            publish_cutoff(ws.root, run.id, time.time() + 3.0)  # as the search does when it keeps time back
            seen.append((before, ctx.seconds_left()))
            return super().fit(spec, pipeline, train, dev, ctx)

    cold_start(ws, data, "route banking messages", 120, make_trainer=lambda s: Moved(), embed_fn=fake_embed)
    # every fit ends by the cutoff moved after it started; the search puts it back at each round (the members
    # a refit fits one after the other in one trial see the one moved by the member before)
    assert all(0 < after <= 3.0 for _, after in seen) and sum(before > 10 for before, _ in seen) > len(seen) / 2


class NoThreshold:
    def fit(self, *a, **k):
        raise RuntimeError("no threshold node in this test")


@pytest.mark.parametrize("threshold_nodes", [True, False])
def test_a_task_with_an_out_of_scope_label_serves_a_model_that_abstains(ws, tmp_path, banking_sample,
                                                                        threshold_nodes):
    """Either the search's abstention node wins, or the winner is wrapped to abstain after the search."""
    from adaptloop.train import load_trained, trainer_for
    from adaptloop.train.threshold import ThresholdModel

    rows = subset(banking_sample, 6, 40)
    first = rows[0]["label"]
    for r in rows:  # one intent stands for "none of the above"
        if r["label"] == first:
            r["label"] = "oos"
    ws.settings.serve.abstain_share = 0.05
    fake = FakeTrainer()
    threshold = trainer_for("threshold") if threshold_nodes else NoThreshold()
    r = cold_start(ws, load_classification(write_jsonl(tmp_path / "t.jsonl", rows)), "route banking messages", 60,
                   make_trainer=lambda s: threshold if s == "threshold" else fake, embed_fn=fake_embed)
    store = ws.store
    assert r.spec.out_of_scope_label == "oos"
    model = load_trained(ws.artifacts.path(registry.resolve(store, "production").artifact))
    assert isinstance(model, ThresholdModel) and model.abstain == "oos" and 0 < model.threshold < 1
    node = store.get(Node, r.winner["node_id"])
    assert node.pipeline["strategy"] == "threshold" and node.chosen["share"] == 0.05
    assert node.name == ("threshold" if threshold_nodes else "abstain")
    if not threshold_nodes:  # wrapped after the search: what it does on dev is on record
        d = next(d for d in store.decisions(r.run_id) if d.kind == "abstain")
        assert "in-scope examples to 'oos'" in d.reason
        base = store.get(Node, node.parent_id)  # the model the search would have served, unchanged inside
        assert base.pipeline["strategy"] == "refit"
        texts = [x["text"] for x in rows[:30]]
        np.testing.assert_allclose(model.base.predict_proba(texts),
                                   load_trained(ws.artifacts.path(base.model_artifact)).predict_proba(texts))


@pytest.mark.parametrize("features", [False, True])
def test_an_extraction_cold_start_opens_with_the_cased_tagger_and_ensembles_the_two(ws, tmp_path, features):
    """The opening trains a tagger on the ladder's next rung beside the baseline, held to the trailing
    checkpoint (unlike a classification opening's fine-tune), and, with a feature encoder installed, a
    frozen-tagger, never cut for trailing (its cost is its forward pass); the best tagger of each encoder is
    averaged, and that ensemble, level with its members on dev, is what `new` selects."""
    import time

    from adaptloop.data.sources import load_extraction
    from adaptloop.train import load_trained
    from tests.conftest import DATASETS

    rows = [json.loads(line) for line in (DATASETS / "presidio_pii" / "train.jsonl").open(encoding="utf-8")][:120]
    data = load_extraction(write_jsonl(tmp_path / "pii.jsonl", rows))
    seen = []
    ws.settings.train.feature_encoder = str(tmp_path) if features else ""  # a local folder counts as installed

    class Recording:
        def __init__(self, strategy):
            self.inner = fake_trainer(strategy)

        def fit(self, spec, pipeline, train, dev, ctx):
            seen.append((pipeline.strategy, pipeline.encoder, ctx.checkpoint - time.monotonic()))
            return self.inner.fit(spec, pipeline, train, dev, ctx)

    r = cold_start(ws, data, "build me a PII detection model", 600, make_trainer=Recording, embed_fn=fake_embed)
    first, *later = seen
    cased = [s for s in later if s[0] == "tagger" and s[1] != first[1]]
    assert cased and cased[0][2] != float("inf")  # the opening's cased tagger is held to the checkpoint
    frozen = [s for s in later if s[0] == "frozen-tagger"]
    assert {s[1] for s in frozen} == ({str(tmp_path)} if features else set())
    assert all(s[2] == float("inf") for s in frozen)
    ensembles = [n for n in ws.store.nodes(r.run_id) if n.pipeline["strategy"] == "ensemble"]
    assert ensembles and len(ensembles[0].pipeline["hparams"]["member_names"]) == (3 if features else 2)
    assert r.winner["selected_on_dev"].startswith("ensemble")  # then refitted on train + dev, as a tagger ensemble
    (won,) = [n for n in ws.store.nodes(r.run_id) if n.name == r.winner["node"]]
    assert type(load_trained(ws.artifacts.path(won.model_artifact))).__name__ == "TaggerEnsemble"
