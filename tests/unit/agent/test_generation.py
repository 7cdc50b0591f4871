"""The generation family behind fake model seams: decode-time moves follow the findings, targets that
cannot be right leave the pool, the cold start (the one loop) asks a (scripted) teacher and runs decode
moves, few-shot examples."""

from __future__ import annotations

import json

from sqlalchemy import select

from adaptloop.agent.coldstart import cold_start
from adaptloop.agent.generation_moves import decode_moves, unusable_targets
from adaptloop.data.generation import LoadedSamples, Sample
from adaptloop.data.teacher import TeacherClient
from adaptloop.diagnose.generation import diagnose, score_outputs
from adaptloop.types import NodeResult
from adaptloop.workspace import Workspace, init_workspace
from tests.unit.data.test_teacher import PROBLEMS, scripted


def test_decode_moves_follow_the_findings():
    samples = [Sample(prompt=f"q{i}", target=f"...\n#### {i}") for i in range(4)]
    outputs = ["so #### 0", "The result is 5", "word " * 40, "word " * 40]
    findings = diagnose("math", score_outputs("math", samples, outputs, n_tokens=[3, 4, 64, 64], max_new_tokens=64))
    moves = {name: (changes, cost) for name, changes, cost, _why in decode_moves("math", findings, 64)}
    assert moves["format-normalise"] == ({"normalise": "math"}, 0.0)  # a rescoring: no decode
    assert moves["decoding"][0] == {"decoding": {"repetition_penalty": 1.15}}
    assert moves["more-tokens"] == ({"max_new_tokens": 128}, 2.0)
    assert "more-tokens" not in {m[0] for m in decode_moves("label", findings, 64)}  # labels are short
    assert "decoding" not in {m[0] for m in decode_moves("code", findings, 64)}  # code repeats its names
    assert decode_moves("math", [], 64) == []


def test_targets_that_cannot_be_right_leave_the_training_pool():
    math = [Sample(prompt="a", target="2 + 2 = 4\n#### 4"), Sample(prompt="b", target="I forgot")]
    assert list(unusable_targets("math", math).values()) == ["no final answer in the target"]
    ok = Sample(prompt="add", target="def add(a, b):\n    return a + b",
                extra={"test_list": ["assert add(1, 2) == 3"]})
    wrong = Sample(prompt="sub", target="def sub(a, b):\n    return a + b",
                   extra={"test_list": ["assert sub(3, 1) == 2"]})
    assert unusable_targets("code", [ok, wrong]) == {wrong.id: "the reference fails its own tests"}
    summaries = [Sample(prompt=f"p{i}", target="a short one line summary") for i in range(5)]
    long = Sample(prompt="x", target="word " * 200)
    assert set(unusable_targets("summary", [*summaries, long])) == {long.id}
    assert unusable_targets("label", summaries) == {}


class FakeLM:
    """Answers every math problem with the sum of its numbers, loops on every third one."""

    def __init__(self, *, normalise: str = "", decoding: dict | None = None, shots=()) -> None:
        self.normalise, self.decoding, self.shots = normalise, dict(decoding or {}), tuple(shots)

    def with_decoding(self, *, normalise=None, decoding=None, labels=None, max_new_tokens=None, shots=None):
        return FakeLM(normalise=self.normalise if normalise is None else normalise,
                      decoding=self.decoding if decoding is None else decoding,
                      shots=self.shots if shots is None else shots)

    def finish(self, output: str) -> str:
        from adaptloop.data.outputs import normalise_output

        return normalise_output(output, self.normalise) if self.normalise else output

    def generate(self, samples, *, batch_size=16, progress=None):
        out = []
        for i, s in enumerate(samples):
            total = sum(int(w) for w in s.prompt.replace("?", "").split() if w.isdigit())
            loop = i % 3 == 0 and not self.decoding
            out.append(self.finish("so so so so " * 6 if loop else f"the answer is {total}"))
        return out

    def save(self, folder):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "adaptloop_model.json").write_text(json.dumps({"kind": "fake"}))


class FakeTrainer:
    """The seam's trainer: ``zero-shot`` loads the fake base, ``sft`` records what it was given."""

    seen: list[list[Sample]] = []

    def __init__(self, strategy: str) -> None:
        self.strategy = strategy

    def fit(self, spec, pipeline, train, dev, ctx):
        if self.strategy == "zero-shot":
            return FakeLM(), NodeResult(dev_metrics={}, train_seconds=0.0)
        FakeTrainer.seen.append(list(train))
        return FakeLM(), NodeResult(dev_metrics={"loss": 1.0}, train_seconds=0.1, curve=[], notes="planned")


def test_cold_start_asks_the_teacher_and_runs_decode_moves(tmp_path):
    from adaptloop.store.db import Decision, Node

    ws = Workspace.open(init_workspace(tmp_path / "ws"))
    transport, calls = scripted(right_every=1)
    loaded = LoadedSamples(samples=tuple(PROBLEMS), quarantined=(), source="mini.jsonl")
    FakeTrainer.seen = []
    r = cold_start(ws, loaded, "solve math word problems", 600, make_trainer=FakeTrainer, embed_fn=None,
                   teacher=TeacherClient("http://t/v1", transport=transport))
    decisions = {d.kind: d for d in ws.store.all(select(Decision))}
    assert "teacher" in decisions and decisions["teacher"].data["accepted"] == len(calls) > 0
    trained_on = FakeTrainer.seen[0]
    assert sum("teacher" in s.source for s in trained_on) == len(calls)
    assert all("\n" in s.target for s in trained_on if "teacher" in s.source)
    names = [n.name for n in ws.store.all(select(Node).order_by(Node.id))]
    assert names[:2] == ["base", "sft"] and {"format-normalise", "decoding"} <= set(names)
    nodes = {n.name: n for n in ws.store.all(select(Node))}
    # the fake fine-tune is no better than the base: the untrained model gets a prompt-template fix
    assert nodes["prompt-template"].pipeline["strategy"] == "zero-shot"  # on the base, or a move on it
    assert nodes["prompt-template"].pipeline["hparams"]["shots"] == 3
    assert nodes["decoding"].pipeline["hparams"]["decoding"] == {"repetition_penalty": 1.15}
    assert nodes["format-normalise"].dev_metrics["format_ok"] >= nodes["sft"].dev_metrics["format_ok"]
    assert r.winner is not None


def test_few_shot_picks_short_distinct_examples_as_shown():
    from adaptloop.agent.generation_moves import few_shot

    samples = [Sample(prompt=f"message {i}", target=["a", "b", "a", "c"][i % 4]) for i in range(12)]
    samples.append(Sample(prompt="x" * 2000, target="d"))
    shots = few_shot(samples, 3, seed=0, show=lambda s: Sample(prompt=f"Q: {s.prompt}", target=s.target))
    assert len(shots) == 3 and len({t for _p, t in shots}) == 3
    assert all(p.startswith("Q: message") for p, _t in shots)
    assert shots == few_shot(samples, 3, seed=0, show=lambda s: Sample(prompt=f"Q: {s.prompt}", target=s.target))


def _plan_state(nodes, seconds_left=600.0):
    from adaptloop.agent.policy import SearchState

    return SearchState(nodes=tuple(nodes), seconds_left=seconds_left, budget=900.0, encoder="lm", n_train=100,
                       n_classes=3, family="generation")


def _plan():
    from adaptloop.agent.generation import GenerationData, GenerationPlan
    from adaptloop.types import TaskSpec

    spec = TaskSpec(name="t", prompt="p", family="generation", labels=("a", "b", "c"),
                    primary_metric="exact_match", output={"kind": "label", "base": "lm", "max_new_tokens": 8})
    train = tuple(Sample(prompt=f"m{i}", target="abc"[i % 3]) for i in range(30))
    data = GenerationData(spec=spec, train=train, dev=train[:10], n_eval=20, recipe="raw")
    return GenerationPlan(data)


def test_the_generation_plan_is_a_policy_base_then_sft_then_a_follow_up():
    from adaptloop.agent.policy import WAIT, Proposal, Stop
    from adaptloop.search.graph import GraphNode

    plan = _plan()
    first = plan.propose(_plan_state([]))
    assert isinstance(first, Proposal) and first.name == "base" and first.pipeline.strategy == "zero-shot"
    assert first.pipeline.hparams["instruction"] == "full"
    running = GraphNode("base", None, first.pipeline.to_dict(), status="running")
    assert plan.propose(_plan_state([running])) is WAIT
    base = GraphNode("base", None, first.pipeline.to_dict(), score=0.0, chosen={"decode_s": 2.0}, order=0)
    sft = plan.propose(_plan_state([base]))
    assert isinstance(sft, Proposal) and sft.name == "sft" and sft.parent == "base"
    assert sft.pipeline.hparams["instruction"] == "short"  # a closed label set trains without the list
    assert sft.reserve_s == 1.3 * 2.0 * (10 + 20)  # the decoding of dev and eval is kept back
    # no time to train: the plan stops rather than start a fine-tune it cannot finish
    assert isinstance(plan.propose(_plan_state([base], seconds_left=sft.reserve_s + 10)), Stop)
    # dev loss still falling at the planned end: train longer
    done = GraphNode("sft", "base", sft.pipeline.to_dict(), score=0.8, order=1, seconds=100,
                     curve=({"dev_score": -2.0}, {"dev_score": -1.0}),
                     chosen={"decode_s": 0.5, "fit_seconds": 100, "notes": "planned 10 steps done", "epochs": 1})
    follow = plan.propose(_plan_state([base, done]))
    assert isinstance(follow, Proposal) and follow.name == "more-epochs" and follow.pipeline.hparams["epochs"] == 2
    # over-fitting instead: LoRA
    over = GraphNode("sft", "base", sft.pipeline.to_dict(), score=0.8, order=1, seconds=100,
                     curve=({"dev_score": -1.0}, {"dev_score": -2.0}), chosen={"fit_seconds": 100, "notes": "x"})
    assert plan.propose(_plan_state([base, over])).name == "lora"
    # no findings, the follow-up done: nothing left to try
    lora = GraphNode("lora", "base", sft.pipeline.to_dict(), score=0.7, order=2)
    stop = plan.propose(_plan_state([base, over, lora]))
    assert isinstance(stop, Stop) and stop.reason == "planned nodes done"


def test_the_generation_plan_applies_decode_moves_to_the_best_node():
    from adaptloop.agent.policy import Proposal
    from adaptloop.search.graph import GraphNode
    from adaptloop.types import Finding

    plan = _plan()
    pipe = {"recipe": "raw", "strategy": "sft", "encoder": "lm", "hparams": {"instruction": "short"}, "seed": 0}
    fmt = Finding(kind="format_errors", summary="3 of 10 outputs do not parse", severity=0.3,
                  suggests=("format-normalise",))
    base = GraphNode("base", None, {**pipe, "strategy": "zero-shot"}, score=0.0, chosen={"decode_s": 1.0}, order=0)
    sft = GraphNode("sft", "base", pipe, score=0.6, order=1, findings=(fmt,), chosen={"fit_seconds": 500})
    move = plan.propose(_plan_state([base, sft], seconds_left=100))
    assert isinstance(move, Proposal) and move.name == "format-normalise" and move.parent == "sft"
    assert move.pipeline.hparams["decode"] == {"normalise": "label"} and move.pipeline.hparams["of"] == "sft"
    # not enough time to decode dev once more: a move that decodes is skipped, and said so
    worse = GraphNode("format-normalise", "sft", move.pipeline.to_dict(), score=0.5, order=2)
    stop = plan.propose(_plan_state([base, sft, worse], seconds_left=30))
    assert "prompt-template" not in stop.reason  # prompt-template is for the untrained model only
    assert stop.reason.startswith("'sft' used the budget")


def test_an_eval_set_of_samples_keeps_its_id_and_reads_the_stored_format():
    from adaptloop.types import EvalSet

    held = (Sample(prompt="q1", target="a"), Sample(prompt="q2", target="b", extra={"test": "x"}))
    es = EvalSet(samples=held)
    assert es.items == held and es.examples == ()
    back = EvalSet.from_dict(json.loads(json.dumps(es.to_dict())))
    assert back == es and back.id == es.id
    # the id is the content hash of the sample ids, as eval sets of generation runs were always stored
    from adaptloop.types import content_hash

    stored = {"id": content_hash(sorted(s.id for s in held))[:16], "samples": [s.to_dict() for s in held]}
    assert EvalSet.from_dict(stored).id == stored["id"]
