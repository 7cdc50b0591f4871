"""Chain-of-thought targets from a teacher endpoint (scripted with httpx.MockTransport), and the
generation cold start's teacher step and decode-time moves behind fake model seams."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import select

from adaptloop.agent.generation import GenerationColdStart
from adaptloop.data.generation import LoadedSamples, Sample
from adaptloop.data.teacher import TeacherClient, teacher_cot
from adaptloop.errors import DataError
from adaptloop.types import NodeResult
from adaptloop.workspace import Workspace, init_workspace

PROBLEMS = [Sample(prompt=f"Tom has {a} apples and buys {b} more. How many now?", target=f"#### {a + b}")
            for a, b in [(2, 3), (4, 5), (7, 1), (6, 6), (3, 9), (8, 2), (5, 5), (1, 1), (9, 4), (2, 8),
                         (3, 3), (4, 4), (6, 1), (7, 7), (5, 9), (8, 8), (2, 2), (9, 9), (1, 6), (3, 7)]]


def scripted(right_every: int = 2):
    """A teacher that answers right on every ``right_every``-th request and wrong otherwise."""
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append(body)
        q = body["messages"][-1]["content"]
        a, b = (int(w) for w in q.replace("?", "").split() if w.isdigit())
        answer = a + b if len(calls) % right_every == 0 else a + b + 1
        text = f"He starts with {a}.\nHe adds {b}: {a} + {b} = {answer}.\n#### {answer}"
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": text}}]})

    return httpx.MockTransport(handler), calls


def test_teacher_solutions_are_kept_only_when_their_answer_is_gold():
    transport, calls = scripted(right_every=2)
    client = TeacherClient("http://teacher/v1", "big-model", api_key="k", transport=transport)
    got = teacher_cot(PROBLEMS[:6], client, limit=4)
    assert (got.asked, got.accepted, got.rejected, got.failed) == (4, 2, 2, 0)
    assert len(got.samples) == 6 and got.samples[4:] == PROBLEMS[4:6]  # not asked: unchanged
    kept = [s for s in got.samples if "teacher" in s.source]
    assert len(kept) == 2 and all(s.target.endswith(f"#### {s.target.split()[-1]}") and "\n" in s.target
                                  for s in kept)
    assert calls[0]["model"] == "big-model" and calls[0]["temperature"] == 0
    assert PROBLEMS[0].target == "#### 5"  # inputs never mutated


def test_a_failing_teacher_is_given_up_on_with_the_reason():
    client = TeacherClient("http://teacher/v1", transport=httpx.MockTransport(lambda r: httpx.Response(503)))
    with pytest.raises(DataError, match="teacher endpoint http://teacher/v1 failed"):
        client.complete([{"role": "user", "content": "hi"}])
    got = teacher_cot(PROBLEMS, client, limit=20, max_failures=3)
    assert (got.asked, got.accepted, got.failed) == (3, 0, 3) and got.samples == PROBLEMS
    assert "503" in got.errors[0]


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
    seen: list[list[Sample]] = []

    def fit(self, pipeline, train, dev, ctx):
        FakeTrainer.seen.append(list(train))
        return FakeLM(), NodeResult(dev_metrics={"loss": 1.0}, train_seconds=0.1, curve=[], notes="planned")


def test_cold_start_asks_the_teacher_and_runs_decode_moves(tmp_path):
    from adaptloop.store.db import Decision, Node

    ws = Workspace.open(init_workspace(tmp_path / "ws"))
    transport, calls = scripted(right_every=1)
    loaded = LoadedSamples(samples=tuple(PROBLEMS), quarantined=(), source="mini.jsonl")
    FakeTrainer.seen = []
    r = GenerationColdStart(ws, loaded, "solve math word problems", 600, make_trainer=lambda s: FakeTrainer(),
                            load_model=lambda name, **kw: FakeLM(),
                            teacher=TeacherClient("http://t/v1", transport=transport)).run()
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
