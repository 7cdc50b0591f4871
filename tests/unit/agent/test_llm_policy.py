"""The LLM planner against a scripted OpenAI-compatible server on loopback (real HTTP, the official
``openai`` client): a valid answer is followed; an unknown move, an unaffordable move, malformed JSON,
a timeout and a spent token budget are each rejected with their reason and the doctrine's proposal runs;
a server without structured output is parsed instead; every request is recorded with what it fed."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from adaptloop.agent.doctrine import DoctrinePolicy
from adaptloop.agent.llm_policy import LLMPolicy, PlanChoice
from adaptloop.agent.policy import Proposal, SearchState
from adaptloop.data.llm import LLMClient, LLMError, parse_json
from adaptloop.search.graph import GraphNode
from adaptloop.types import Finding
from tests.llm_server import ScriptedLLM

ENC = "sentence-transformers/all-MiniLM-L6-v2"


def _state(seconds_left: float = 1000.0) -> SearchState:
    pipe = {"recipe": "raw", "strategy": "frozen", "encoder": ENC, "hparams": {}, "seed": 0}
    base = GraphNode("baseline", None, pipe, score=0.8, model_path="/m/baseline", order=0, seconds=20,
                     findings=(Finding(kind="confusable_pair", summary="a and b are confused", severity=0.3,
                                       suggests=("contrastive", "larger-encoder")),))
    return SearchState(nodes=(base,), seconds_left=seconds_left, budget=1200, encoder=ENC, n_train=500, n_classes=5,
                       n_label_issues=10, ladder=(ENC, "sentence-transformers/all-mpnet-base-v2"), trainable=(ENC,))


def _answer(move: str, parent: str = "baseline", **hparams: float) -> str:
    return json.dumps({"move": move, "parent": parent, "hparams": hparams, "hypothesis": f"try {move}"})


def _plan(server: ScriptedLLM, *, timeout: float = 5.0, max_tokens_per_run: int = 0):
    calls: list[dict] = []
    client = LLMClient(server.url, "scripted", timeout=timeout, retries=0)
    return LLMPolicy(DoctrinePolicy(), client, record=calls.append, max_tokens_per_run=max_tokens_per_run), calls


def test_a_valid_answer_is_followed_with_its_bounded_hyperparameters():
    with ScriptedLLM([_answer("finetune", lr=3e-5)]) as server:
        policy, calls = _plan(server)
        p = policy.propose(_state())
    assert isinstance(p, Proposal) and p.proposer == "llm" and p.move == "finetune" and p.parent == "baseline"
    assert p.pipeline.strategy == "finetune" and p.pipeline.hparams["lr"] == 3e-5
    assert p.reason.startswith("LLM planner: try finetune") and p.detail["doctrine"] == ["larger-encoder", "baseline"]
    assert calls[0]["outcome"] == "followed" and calls[0]["fed"] == "finetune"
    assert calls[0]["prompt_tokens"] == 100 and calls[0]["completion_tokens"] == 20
    sent = json.loads(server.requests[0]["messages"][1]["content"])
    assert {"nodes", "menu", "doctrine_proposal", "seconds_left"} <= set(sent)
    assert sent["nodes"][0]["findings"][0]["kind"] == "confusable_pair"
    assert server.requests[0]["response_format"]["type"] == "json_schema"


@pytest.mark.parametrize(("script", "seconds_left", "why"), [
    ([_answer("distill")], 1000.0, "unknown move 'distill'"),
    ([_answer("finetune")], 40.0, "unaffordable: 'finetune' on 'baseline' needs at least"),
    ([_answer("finetune", lr=0.5)], 1000.0, "hyperparameter lr=0.5 is outside"),
    ([_answer("finetune", parent="nowhere")], 1000.0, "'nowhere' is not a finished node"),
    (["I think you should fine-tune", "still not json"], 1000.0, "malformed answer after one repair request"),
    ([{"sleep": 2.0}], 1000.0, "timed out after 0.5s"),
])
def test_a_bad_answer_is_rejected_with_its_reason_and_the_doctrine_decides(script, seconds_left, why):
    with ScriptedLLM(script) as server:
        policy, calls = _plan(server, timeout=0.5)
        p = policy.propose(_state(seconds_left))
    doctrine = DoctrinePolicy().propose(_state(seconds_left))
    assert isinstance(p, Proposal) and p.proposer == "doctrine"
    assert (p.move, p.parent, p.pipeline) == (doctrine.move, doctrine.parent, doctrine.pipeline)
    assert why in p.detail["llm_rejected"] and "LLM planner rejected" in p.reason
    assert calls[-1]["outcome"].startswith("rejected: ") and why in calls[-1]["outcome"]


def test_one_repair_request_recovers_a_malformed_answer():
    with ScriptedLLM(["Sure! ```json\n{\"move\": \"lora\", \"parent\": baseline}```", _answer("lora")]) as server:
        policy, calls = _plan(server)
        p = policy.propose(_state())
    assert p.proposer == "llm" and p.move == "lora"
    assert "not usable (invalid JSON" in server.requests[1]["messages"][-1]["content"]
    assert calls[0]["prompt_tokens"] == 200  # both requests counted


def test_a_server_without_structured_output_is_asked_again_and_parsed():
    with ScriptedLLM([{"status": 400, "if_schema": True}, "```json\n" + _answer("clean") + "\n```"]) as server:
        policy, _calls = _plan(server)
        p = policy.propose(_state())
    assert p.proposer == "llm" and p.move == "clean"
    assert "response_format" in server.requests[0] and "response_format" not in server.requests[1]
    assert policy.client.json_schema is False  # not offered again


def test_a_spent_token_budget_leaves_the_doctrine_deciding_without_a_request():
    with ScriptedLLM([_answer("finetune"), _answer("lora")]) as server:
        policy, _calls = _plan(server, max_tokens_per_run=100)
        assert policy.propose(_state()).proposer == "llm"  # 120 tokens spent
        p = policy.propose(_state())
    assert p.proposer == "doctrine" and "token budget" in p.detail["llm_rejected"] and len(server.requests) == 1


def test_parse_json_names_what_is_wrong():
    assert parse_json('{"move": "clean"}', PlanChoice).move == "clean"
    with pytest.raises(ValueError, match="no JSON object"):
        parse_json("fine-tune it", PlanChoice)
    with pytest.raises(ValueError, match="schema violation at move"):
        parse_json('{"parent": "x"}', PlanChoice)


def test_an_unreachable_endpoint_is_one_clear_error():
    client = LLMClient("http://127.0.0.1:9/v1", timeout=0.5, retries=0)
    with pytest.raises(LLMError, match="127.0.0.1:9/v1 failed"):
        client.complete([{"role": "user", "content": "hi"}], PlanChoice)


def test_the_cold_start_asks_the_planner_and_stores_every_call(tmp_path, banking_sample):
    from adaptloop.agent.coldstart import cold_start
    from adaptloop.data.sources import load_classification
    from adaptloop.store.db import LLMCall, Node
    from adaptloop.train.fake import fake_trainer
    from adaptloop.workspace import Workspace, init_workspace
    from tests.conftest import subset, write_jsonl

    ws = Workspace.open(init_workspace(tmp_path / "ws"))
    ws.settings.search.workers = 1
    data = load_classification(write_jsonl(tmp_path / "train.jsonl", subset(banking_sample, 6, 40)))
    with ScriptedLLM([_answer("distill")] + [_answer("lora")] * 30) as server:
        ws.settings.llm.url, ws.settings.llm.timeout, ws.settings.llm.retries = server.url, 5.0, 0
        r = cold_start(ws, data, "route banking messages", 600, make_trainer=fake_trainer, embed_fn=None)
    nodes = ws.store.all(select(Node).order_by(Node.id))
    assert nodes[0].proposer == "doctrine"  # the baseline is the doctrine's
    assert nodes[1].proposer == "doctrine"  # 'distill' is not a move: rejected
    assert any(n.proposer == "llm" for n in nodes), [(c.outcome, c.fed) for c in ws.store.all(select(LLMCall))]
    calls = ws.store.all(select(LLMCall).order_by(LLMCall.id))
    assert calls[0].outcome.startswith("rejected: unknown move") and calls[0].run_id == r.run_id
    assert any(c.outcome == "followed" and c.fed in {n.name for n in nodes} for c in calls)
    assert all(c.messages and c.prompt_tokens == 100 for c in calls)


def test_replay_re_decides_a_stored_run_offline_to_the_same_graph(tmp_path, banking_sample):
    from adaptloop.agent.coldstart import cold_start
    from adaptloop.agent.flows import replay_client
    from adaptloop.data.sources import load_classification
    from adaptloop.errors import NotFoundError
    from adaptloop.store.db import Decision, Node
    from adaptloop.train.fake import fake_trainer
    from adaptloop.workspace import Workspace, init_workspace
    from tests.conftest import subset, write_jsonl

    ws = Workspace.open(init_workspace(tmp_path / "ws"))
    ws.settings.search.workers = 1
    data = load_classification(write_jsonl(tmp_path / "train.jsonl", subset(banking_sample, 6, 40)))
    script = [_answer("distill"), "not json", "still not json", _answer("lora"), _answer("clean")] + \
        [_answer("lora")] * 30  # the opening has already fine-tuned the baseline
    with ScriptedLLM(script) as server:
        ws.settings.llm.url, ws.settings.llm.timeout, ws.settings.llm.retries = server.url, 5.0, 0
        first = cold_start(ws, data, "route banking messages", 600, make_trainer=fake_trainer, embed_fn=None)
    ws.settings.llm.url = "http://127.0.0.1:9/v1"  # nothing listens there: a replay must not ask
    again = cold_start(ws, data, "route banking messages", 600, make_trainer=fake_trainer, embed_fn=None,
                       llm=replay_client(ws, first.run_id))

    def graph(run_id):
        nodes = ws.store.all(select(Node).where(Node.run_id == run_id).order_by(Node.id))
        return [(n.name, n.proposer, n.pipeline, n.parent_id and ws.store.get(Node, n.parent_id).name) for n in nodes]

    def decisions(run_id):
        return [(d.kind, d.reason) for d in ws.store.all(select(Decision).where(Decision.run_id == run_id)
                                                          .order_by(Decision.id)) if d.kind not in ("eval_set_frozen",)]

    assert graph(again.run_id) == graph(first.run_id)
    assert {p for _n, p, _pipe, _parent in graph(first.run_id)} == {"doctrine", "llm"}
    assert [k for k, _ in decisions(again.run_id)] == [k for k, _ in decisions(first.run_id)]
    with pytest.raises(NotFoundError, match="no run 99 to replay"):
        replay_client(ws, 99)
