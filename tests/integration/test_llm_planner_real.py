"""The LLM planner and judge against a real language model end to end: adaptloop's own `serve` of the untrained
SmolLM2-135M-Instruct (offline, from its PyPI package) on `/v1/chat/completions`, called through the
official `openai` client by a cold start and an improve cycle. Whatever the small model writes, both
complete: every
answer is either followed (a valid move) or rejected with its reason and the doctrine's proposal runs,
and every request is stored with its tokens."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from sqlalchemy import select

pytestmark = pytest.mark.integration


def _served_smollm2(root):
    """A workspace whose production model is the untrained SmolLM2 (an admin's forced promotion)."""
    from adaptloop.agent.executor import save_model
    from adaptloop.store import registry
    from adaptloop.store.db import Node, Run, Task
    from adaptloop.train.causal import DEFAULT_CAUSAL, load_base
    from adaptloop.types import TaskSpec
    from adaptloop.workspace import Workspace, init_workspace

    ws = Workspace.open(init_workspace(root))
    lm = load_base(DEFAULT_CAUSAL, max_new_tokens=160)
    lm.untrained = True
    spec = TaskSpec(name="chat", prompt="chat", family="generation", labels=[], primary_metric="rouge_l",
                    output={"kind": "text", "base": DEFAULT_CAUSAL, "max_new_tokens": 160})
    task = ws.store.add(Task(name="chat", prompt="chat", family="generation", spec=spec.to_dict()))
    run = ws.store.add(Run(task_id=task.id, kind="coldstart", budget_s=0, state={}))
    node = ws.store.add(Node(run_id=run.id, name="base", intervention="start", reason="the base model",
                             pipeline={"recipe": "raw", "strategy": "zero-shot", "encoder": DEFAULT_CAUSAL},
                             status="done"))
    mv = registry.register(ws.store, task_id=task.id, node_id=node.id, artifact=save_model(ws, lm), metrics={},
                           lineage={}, reason="the untrained model, to answer the planner")
    registry.force_promote(ws.store, mv.id, who="tests", why="serve SmolLM2 as the planner's endpoint")
    return ws


def test_the_planner_and_judge_run_end_to_end_on_smollm2_and_fall_back_cleanly(tmp_path, banking_sample):
    import uvicorn

    from adaptloop.agent.coldstart import cold_start
    from adaptloop.agent.improve import ImproveCycle
    from adaptloop.agent.traffic import import_traces
    from adaptloop.data.sources import load_classification
    from adaptloop.report.runs import llm_usage
    from adaptloop.serve.app import create_app
    from adaptloop.store.db import LLMCall, Node
    from adaptloop.train.fake import _features, fake_trainer
    from adaptloop.workspace import Workspace, init_workspace
    from tests.conftest import subset, write_jsonl

    served = _served_smollm2(tmp_path / "lm")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(served), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(600):
            if server.started:
                break
            time.sleep(0.1)
        ws = Workspace.open(init_workspace(tmp_path / "ws"))
        ws.settings.search.workers = 1
        ws.settings.llm.url = f"http://127.0.0.1:{port}/v1"
        ws.settings.llm.timeout, ws.settings.llm.max_tokens = 120, 32  # each token ~60 ms on 2 cores
        ws.settings.llm.max_tokens_per_run = 2000  # about one request; then the doctrine alone
        ws.settings.agent.plateau_rounds = 1  # a short search: a few planner requests
        data = load_classification(write_jsonl(tmp_path / "train.jsonl", subset(banking_sample, 4, 20)))
        r = cold_start(ws, data, "route banking messages", 600, make_trainer=fake_trainer, embed_fn=None)
        # production: a few traces without feedback for the judge, enough corrected ones for a cycle
        rows = subset(banking_sample, 4, 30, offset=20)
        traces = [{"id": f"g{i}", "input": x["text"], "output": {"label": x["label"]},
                   "feedback": {"label": x["label"], "source": "user"}} for i, x in enumerate(rows[:-3])]
        traces += [{"id": f"u{i}", "input": x["text"], "output": {"label": x["label"]}}
                   for i, x in enumerate(rows[-3:])]
        import_traces(ws, str(write_jsonl(tmp_path / "traces.jsonl", traces)))
        ws.settings.llm.judge_max = 1  # one judged trace shows the path; each costs a SmolLM2 generation
        ws.settings.llm.max_tokens = 64  # room for the judge's JSON answer
        improved = ImproveCycle(ws, 120, make_trainer=fake_trainer, embed_fn=_features).run()
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    nodes = ws.store.all(select(Node).where(Node.run_id == r.run_id))
    calls = ws.store.all(select(LLMCall).where(LLMCall.run_id == r.run_id))
    assert r.version is not None and len(nodes) >= 2
    assert calls and all(c.outcome == "followed" or c.outcome.startswith("rejected: ") for c in calls)
    assert all(c.prompt_tokens > 0 for c in calls if "failed" not in c.outcome)
    by = {n.name: n.proposer for n in nodes}
    assert {by.get(c.fed) for c in calls if c.outcome == "followed"} <= {"llm"}
    usage = llm_usage(ws, r.run_id)
    assert usage["requests"] == len(calls) and usage["prompt_tokens"] == sum(c.prompt_tokens for c in calls)
    print(f"SmolLM2 planner: {usage['requests']} requests, {usage['followed']} followed, "
          f"{usage['prompt_tokens']} + {usage['completion_tokens']} tokens; "
          + "; ".join(sorted({c.outcome[:90] for c in calls})))
    judged = ws.store.all(select(LLMCall).where(LLMCall.role == "judge"))
    assert len(judged) == 1 and all(c.run_id == improved.run_id for c in judged)
    assert all(c.outcome == "unsure" or c.outcome.startswith(("followed", "rejected: ")) for c in judged)
    assert improved.decision in ("promoted", "refused", "no-op")
    print(f"SmolLM2 judge: {len(judged)} traces, outcomes " + "; ".join(sorted({c.outcome[:90] for c in judged}))
          + f"; tokens {sum(c.prompt_tokens for c in judged)} + {sum(c.completion_tokens for c in judged)}; "
          f"cycle: {improved.decision}")
