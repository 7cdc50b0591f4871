"""The LLM planner: a ``Policy`` that asks any OpenAI-compatible model for the next move, with the
doctrine as its floor.

Each round the doctrine proposes first. Waiting, stopping, the first (baseline) node and the opening stay the
doctrine's; for every other trial the LLM sees the typed run state — the nodes with their scores,
costs and top findings with evidence, the budget left, the menu of moves that apply to each node
with their cost estimates and hypotheses, and the doctrine's own proposal — and answers with a
move, a parent, bounded hyperparameter changes and a hypothesis (``PlanChoice``).

Its answer is followed only when it checks out: a move of the catalogue, on a finished node it
applies to, affordable in the budget left, hyperparameters within ``HPARAM_BOUNDS``. An unknown
move, an unaffordable one, a malformed answer (after one repair request), a timeout or a spent
token budget is rejected with its reason, and the doctrine's proposal runs instead. Every request
and answer is recorded with the node it decided and whether it was followed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, Field

from adaptloop.agent.doctrine import DoctrinePolicy, _unique, cost
from adaptloop.agent.policy import Proposal, SearchState, Stop
from adaptloop.data.llm import LLMClient, LLMError
from adaptloop.search import graph
from adaptloop.search import interventions as iv
from adaptloop.search.graph import GraphNode
from adaptloop.types import Pipeline

GRAPH_MOVES = ("ensemble", "merge", "threshold")
# what the planner may change on a proposed pipeline, and within what range
HPARAM_BOUNDS: dict[str, tuple[float, float]] = {
    "lr": (1e-6, 1e-2), "epochs": (0.25, 20.0), "C": (1e-3, 1e3), "batch_size": (4, 128),
    "weight_decay": (0.0, 0.3), "lora_r": (2, 64),
}
SYSTEM = (
    "You are the planner of adaptloop, an agent that adapts a small language model to a task by "
    "training whole pipelines and keeping what scores best on a dev split. Each turn, choose the next "
    "pipeline to train: a move from the menu, on the node it is listed for. Reason from the findings "
    "(the evidence of what the current models get wrong), the scores and costs so far and the budget "
    "left; the doctrine's proposal is a sound default. Answer with one JSON object: "
    '{"move": "<a move from the menu>", "parent": "<the node it applies to>", '
    '"hparams": {<optional changes, e.g. "lr": 2e-5, "epochs": 3>}, '
    '"hypothesis": "<one sentence: what you expect this to fix and why>"}'
)


class PlanChoice(BaseModel):
    move: str
    parent: str | None = None
    hparams: dict[str, float] = Field(default_factory=dict)
    hypothesis: str = ""


Record = Callable[[dict[str, Any]], None]


class LLMPolicy:
    """The doctrine, with an LLM choosing among the moves it would consider (see the module docstring).

    Args:
        doctrine: the fallback and the source of the menu.
        client: the endpoint.
        record: stores one request (role, fed, messages, response, outcome, tokens, seconds).
        max_tokens_per_run: tokens the planner may spend in this run (0: no limit).
    """

    name = "llm"

    def __init__(self, doctrine: DoctrinePolicy, client: LLMClient, *, record: Record = lambda _r: None,
                 max_tokens_per_run: int = 0) -> None:
        self.doctrine, self.client, self.record = doctrine, client, record
        self.max_tokens = max_tokens_per_run
        self.spent = 0

    def propose(self, s: SearchState) -> Proposal | Stop | None:
        fallback = self.doctrine.propose(s)
        if not isinstance(fallback, Proposal) or fallback.kind in ("baseline", "opening"):
            return fallback  # waiting, stopping, the first node and the opening's are the doctrine's
        if self.max_tokens and self.spent >= self.max_tokens:
            return self._fallback(fallback, f"the run's LLM token budget ({self.max_tokens}) is spent")
        menu = self.menu(s)
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": json.dumps(self.view(s, menu, fallback), default=str)}]
        try:
            reply = self.client.complete(messages, PlanChoice)
        except LLMError as exc:
            self.spent += exc.prompt_tokens + exc.completion_tokens
            self._record(exc.messages or messages, exc.text, f"rejected: {exc.reason}", fallback.name,
                         exc.prompt_tokens, exc.completion_tokens, 0.0)
            return self._fallback(fallback, exc.reason)
        self.spent += reply.prompt_tokens + reply.completion_tokens
        chosen, why = self.check(reply.parsed, menu, s)
        if chosen is None:
            self._record(reply.messages, reply.text, f"rejected: {why}", fallback.name, reply.prompt_tokens,
                         reply.completion_tokens, reply.seconds)
            return self._fallback(fallback, why)
        name = _unique(chosen.name, s.nodes)
        self._record(reply.messages, reply.text, "followed", name, reply.prompt_tokens, reply.completion_tokens,
                     reply.seconds)
        hypothesis = reply.parsed.hypothesis.strip() or chosen.reason
        return replace(chosen, name=name, proposer="llm",
                       reason=f"LLM planner: {hypothesis} (the doctrine proposed '{fallback.move}' on "
                              f"'{fallback.parent}')",
                       detail={**chosen.detail, "doctrine": [fallback.move, fallback.parent],
                               "hparams_changed": dict(reply.parsed.hparams)})

    # -- what the planner sees ------------------------------------------------------------------
    def menu(self, s: SearchState) -> list[Proposal]:
        """Every move the doctrine would consider now: per expandable node, and over the graph."""
        out: list[Proposal] = []
        for n in graph.scored(s.nodes):
            if n.strategy not in graph.UNEXPANDABLE:
                out += self.doctrine.candidates(n, s)
        return out + self.doctrine.graph_moves(s)

    @staticmethod
    def view(s: SearchState, menu: list[Proposal], fallback: Proposal) -> dict[str, Any]:
        def node(n: GraphNode) -> dict[str, Any]:
            p = n.pipeline
            return {"name": n.name, "parent": n.parent, "status": n.status, "dev_score": round(n.score, 4),
                    "seconds": round(n.seconds), "pipeline": {k: p.get(k) for k in ("recipe", "strategy", "encoder")},
                    "hparams": {k: v for k, v in p.get("hparams", {}).items() if k in HPARAM_BOUNDS},
                    "findings": [{"kind": f.kind, "summary": f.summary, "severity": round(f.severity, 3),
                                  "suggests": list(f.suggests)}
                                 for f in sorted(n.findings, key=lambda f: -f.severity)[:3]]}

        return {"task_family": s.family, "n_train": s.n_train, "n_classes": s.n_classes,
                "seconds_left": round(s.seconds_left), "budget_seconds": round(s.budget),
                "nodes": [node(n) for n in s.nodes],
                "menu": [{"move": p.move, "parent": p.parent, "estimated_seconds": round(cost(p.pipeline, s)),
                          "hypothesis": p.reason} for p in menu],
                "doctrine_proposal": {"move": fallback.move, "parent": fallback.parent, "reason": fallback.reason},
                "hparam_bounds": HPARAM_BOUNDS}

    # -- checking the answer ----------------------------------------------------------------------
    @staticmethod
    def check(choice: PlanChoice, menu: list[Proposal], s: SearchState) -> tuple[Proposal | None, str]:
        """The menu's proposal the answer names, with its hyperparameter changes; or None and why not."""
        if choice.move not in iv.BY_NAME and choice.move not in GRAPH_MOVES:
            return None, f"unknown move '{choice.move}' (the catalogue: {', '.join(sorted(iv.BY_NAME))})"
        nodes = {n.name: n for n in s.nodes}
        parent = nodes.get(choice.parent or "")
        if parent is None or parent.status != "done":
            return None, f"'{choice.parent}' is not a finished node"
        for name, value in choice.hparams.items():
            lo, hi = HPARAM_BOUNDS.get(name, (None, None))
            if lo is None:
                return None, f"hyperparameter '{name}' may not be changed (allowed: {', '.join(HPARAM_BOUNDS)})"
            if not lo <= value <= hi:
                return None, f"hyperparameter {name}={value:g} is outside [{lo:g}, {hi:g}]"
        picked = next((p for p in menu if p.move == choice.move and p.parent == parent.name), None)
        if picked is None:
            child = iv.apply(choice.move, Pipeline.from_dict(parent.pipeline), None,
                             iv.Context(ladder=s.ladder, oos_label=s.oos_label, abstain_share=s.abstain_share,
                                        parent_model=parent.model_path, parent_name=parent.name,
                                        findings=parent.findings)) \
                if choice.move in iv.BY_NAME else None
            if child is not None and cost(child, s) > s.seconds_left:
                return None, (f"unaffordable: '{choice.move}' on '{parent.name}' needs at least "
                              f"{cost(child, s):.0f}s, {s.seconds_left:.0f}s are left")
            return None, f"'{choice.move}' does not apply to '{parent.name}' now (not applicable, or tried)"
        if choice.hparams:
            pipe = replace(picked.pipeline, hparams={**picked.pipeline.hparams,
                                                     **{k: (int(v) if k in ("batch_size", "lora_r") else v)
                                                        for k, v in choice.hparams.items()}})
            if cost(pipe, s) > s.seconds_left:
                return None, f"unaffordable with those hyperparameters: at least {cost(pipe, s):.0f}s, " \
                             f"{s.seconds_left:.0f}s are left"
            picked = replace(picked, pipeline=pipe)
        return picked, ""

    def _fallback(self, fallback: Proposal, why: str) -> Proposal:
        return replace(fallback, reason=f"{fallback.reason} (LLM planner rejected: {why}; the doctrine's proposal)",
                       detail={**fallback.detail, "llm_rejected": why})

    def _record(self, messages: list[dict[str, str]], response: str, outcome: str, fed: str, tin: int, tout: int,
                seconds: float) -> None:
        self.record({"role": "planner", "fed": fed, "messages": messages, "response": response, "outcome": outcome,
                     "prompt_tokens": tin, "completion_tokens": tout, "seconds": round(seconds, 3)})

