"""The cold-start loop: prepare (``agent.prepare``) → diagnosis-driven graph search → promote.

Every node, finding, outcome and decision is stored with a timestamp and a reason.
Ctrl-C leaves the store consistent (running nodes are marked ``interrupted``);
``resumable_run`` + ``ColdStart.run`` continue the same run with the budget that was left.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from adaptloop.agent.abstain import abstaining
from adaptloop.agent.budget import Clock, parse_budget
from adaptloop.agent.distill import CONTENTION, SPEED_CHECKS
from adaptloop.agent.executor import (
    Executor,
    InlineExecutor,
    Trial,
    TrialOutcome,
    cutoff_path,
    live_score_path,
    make_executor,
    model_speed,
    publish_cutoff,
    worker_died,
)
from adaptloop.agent.families import Family, family_of
from adaptloop.agent.policy import WAIT, Policy, Proposal, SearchState, Stop
from adaptloop.agent.predict import embedding_cache
from adaptloop.agent.prepare import fail_run, register_node
from adaptloop.agent.refit import refitted_form
from adaptloop.errors import AdaptloopError, NotFoundError, RunFailed
from adaptloop.evaluate.gate import first_model, paired_bootstrap
from adaptloop.evaluate.metrics import primary, scalars
from adaptloop.evaluate.rows import metrics_of
from adaptloop.search import graph, portfolio
from adaptloop.search.graph import GraphNode
from adaptloop.search.interventions import TRAINED
from adaptloop.store import registry
from adaptloop.store.db import (
    FindingRow,
    Node,
    Outcome,
    Run,
    utcnow,
)
from adaptloop.train import Trainer, load_trained, trainer_for
from adaptloop.train.base import Progress, no_progress
from adaptloop.types import EvalSet, Finding, Pipeline, TaskSpec
from adaptloop.workspace import Workspace

log = logging.getLogger(__name__)

FINAL_RESERVE_S = 20.0  # budget kept back for scoring the winner on the eval set
# with [serve] export on, the winner's ONNX export and its parity check follow the search inside the budget:
# this share of it (at most EXPORT_MAX_S) is kept back for them as well. presidio_pii, 20m: the export of a
# MiniLM + e5 tagger pair took 49 s after a search that had spent the budget (1,243 s in all); a lone MiniLM
# model's takes 10-15 s
EXPORT_SHARE = 0.04
EXPORT_MAX_S = 60.0
MIN_NODE_S = 10.0  # no new node starts with less than this left (the first one always runs)
PARALLEL_MIN_S = 120.0  # below this budget, trials run one at a time
# a trial whose dev score still trails the best node after this share of the run's budget stops there
# (its best state kept): no single trial eats the budget unless it is on its way to be the best node
TRIAL_SHARE = 0.3
# a winner slower than [serve] min_throughput gets a distilled student after the search (agent/distill.py),
# inside the same budget: while such a model may win (a trial on a larger encoder or a too-slow ensemble
# runs, or the best node measured below the limit) the search keeps this share of the budget (at most
# [serve] student_budget) back, and a proposal of such a model must leave it
STUDENT_SHARE = 0.25


@dataclass(frozen=True)
class ColdStartResult:
    task_id: int
    run_id: int
    spec: TaskSpec
    eval_set_id: str
    nodes: list[dict[str, Any]]
    winner: dict[str, Any] | None
    version: int | None
    stop_reason: str
    wall_seconds: float
    curation: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "run_id": self.run_id, "spec": self.spec.to_dict(),
                "eval_set_id": self.eval_set_id, "nodes": self.nodes, "winner": self.winner,
                "version": self.version, "stop_reason": self.stop_reason,
                "wall_seconds": round(self.wall_seconds, 1), "curation": self.curation}


def serving_reserve(ws: Workspace, budget_s: float) -> float:
    """Seconds of a cold start's budget a student of a too-slow winner gets: ``STUDENT_SHARE`` of it, at
    most ``[serve] student_budget``; 0 without ``[serve] min_throughput``."""
    if ws.settings.serve.min_throughput <= 0:
        return 0.0
    return min(parse_budget(ws.settings.serve.student_budget), STUDENT_SHARE * budget_s)


def export_reserve(ws: Workspace, family: str, budget_s: float) -> float:
    """Seconds of a budget kept for the winner's export: ``EXPORT_SHARE`` of it, at most ``EXPORT_MAX_S``;
    0 with ``[serve] export`` off or for a family the exporter does not cover (generation)."""
    if not ws.settings.serve.export or family == "generation":
        return 0.0
    return min(EXPORT_MAX_S, EXPORT_SHARE * budget_s)


def final_reserve(ws: Workspace, family: str, budget_s: float) -> float:
    """Seconds a search leaves of its budget for what follows it: scoring the winner on the eval set
    (``FINAL_RESERVE_S``) and the export (``export_reserve``)."""
    return FINAL_RESERVE_S + export_reserve(ws, family, budget_s)


def _node_dict(n: Node) -> dict[str, Any]:
    return {"id": n.id, "name": n.name, "parent_id": n.parent_id, "status": n.status,
            "intervention": n.intervention, "reason": n.reason, "pipeline": n.pipeline,
            "move": n.move, "finding": n.finding, "proposer": n.proposer or "doctrine",
            "dev": n.dev_metrics, "eval": n.eval_metrics,
            "train_seconds": round(n.train_seconds, 1), "texts_per_second": n.texts_per_second,
            "started_at": n.started_at.isoformat(),
            "finished_at": n.finished_at.isoformat() if n.finished_at else None}


class ColdStart:
    """Runs the search for one prepared run.

    Each round: build the graph state → the policy proposes (or waits, or stops) → the
    node is recorded with its hypothesis → the executor trains it → its dev predictions are
    diagnosed (findings stored with evidence) → its gain over the parent is stored as an
    outcome the doctrine learns from; a drop is recorded as a rollback.

    Args:
        ws: the workspace.
        run_id: a prepared (or interrupted) run.
        progress: progress-bar factory.
        make_trainer: strategy -> Trainer (the seam tests fill with a fake; must pickle by
            reference for worker processes, i.e. a module-level function).
        policy: chooses each trial (default: the task family's, e.g. the doctrine).
        executor: where trials run (default: from settings; one worker runs inline).
        promote: point ``production`` at the winner (cold start); False registers it as the
            ``candidate`` only, for the regression gate of an improve cycle to decide.
        first: proposals started before the policy is asked (an improve cycle's incumbent recipe).
        llm: the LLM planner's client (default: one for ``[llm] url``; a ``ReplayClient`` replays a run).
    """

    def __init__(self, ws: Workspace, run_id: int, *, progress: Progress = no_progress,
                 make_trainer: Callable[[str], Trainer] = trainer_for,
                 policy: Policy | None = None, executor: Executor | None = None,
                 promote: bool = True, first: Sequence[Proposal] = (), llm: Any = None) -> None:
        self.ws = ws
        self.llm = llm
        self.first = tuple(first)
        self.promote = promote
        self.run_id = run_id
        self.progress = progress
        self.make_trainer = make_trainer
        self.policy = policy
        self.executor = executor
        self.family: Family | None = None
        self.final_s = FINAL_RESERVE_S  # seconds the search leaves for the eval scoring and export (``final_reserve``)
        self.keep_back = 0.0  # seconds held for the student (``serving_reserve``) while a slow model is in play
        self.timed_alone: set[str] = set()  # nodes whose speed was measured again with the cores to themselves

    def run(self) -> ColdStartResult:
        ws, store = self.ws, self.ws.store
        run: Run = store.get(Run, self.run_id)
        spec = store.run_state(run).spec
        clock = Clock(run.budget_s, spent=run.spent_s)
        started = time.monotonic()
        executor = self.executor
        running: dict[Future, tuple[Node, Callable[[int], None]]] = {}
        starting: Node | None = None
        stop = ""
        family = self.family = family_of(spec.family)
        self.final_s = final_reserve(ws, spec.family, clock.budget_s)
        try:
            book = family.data(ws, run)
            policy = self.policy or family.policy(ws, run, book, self.llm)
            if executor is None:
                parallel = ws.settings.search.workers if clock.left >= PARALLEL_MIN_S and family.parallel else 1
                search = ws.settings.search
                executor = make_executor(search.executor, parallel, ray_address=search.ray_address,
                                         device_setting=ws.settings.train.device)
            while True:
                state = self._state(spec, book, clock, executor.workers)
                pending = [p for p in self.first if p.name not in {n.name for n in state.nodes}]
                choice = pending[0] if pending else policy.propose(state)
                full = len(running) >= executor.workers
                spent = (isinstance(choice, Proposal) and bool(graph.scored(state.nodes))
                         and clock.left < self.final_s + MIN_NODE_S + self.keep_back)
                # running trials started within the budget (their deadlines bound them): collected before a stop
                if choice is WAIT or (running and (isinstance(choice, Stop) or full or spent)):
                    if not running:
                        stop = "nothing left to run"
                        break
                    finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for f in finished:
                        self._collect(f, *running.pop(f), spec=spec, book=book)
                    store.update(Run, self.run_id, spent_s=clock.spent)
                    continue
                if ((isinstance(choice, Stop) or spent) and clock.left > self.final_s
                        and self._timed_alone(state, book)):
                    continue  # another round with the speeds measured alone
                if isinstance(choice, Stop) or spent:
                    stop = choice.reason if isinstance(choice, Stop) else "budget spent"
                    break
                assert isinstance(choice, Proposal)
                node = self._start_node(choice)
                # every trial after the first scored node but a refit and the opening's trained members: their
                # plans are sized to the budget and their dev curves rise late, and their worth is in the
                # ensemble that follows (snips, 10m: the fine-tune cut at 58% of its plan for trailing the
                # n-gram model by one dev example). The opening's frozen members are held to it: an embedding
                # pass costs what the data costs, whatever the budget (frozen mpnet: 67% of it). So is an
                # extraction opening's cased tagger: three times MiniLM's cost per step, on wnut17 at 20m it ran
                # 686 s (57%) to dev 0.38 against 0.61, too far behind to join the ensemble it opened for.
                # A frozen-tagger's cost is its forward pass; its head's dev curve comes after it, in seconds.
                cap = ((graph.best(state.nodes) is not None or choice.kind == "opening")  # not the first node
                       and choice.pipeline.strategy not in ("refit", "frozen-tagger")
                       and not (choice.kind == "opening" and choice.pipeline.strategy in TRAINED
                                and spec.family == "classification"))
                bar = self.progress(f"{choice.name}: {choice.pipeline.strategy}", 1)
                trial = Trial(root=str(ws.root), run_id=self.run_id, node_id=node.id, name=choice.name,
                              pipeline=choice.pipeline.to_dict(), make_trainer=self.make_trainer,
                              deadline=time.time() + clock.left - max(self.final_s, choice.reserve_s)
                              - max(self.keep_back, state.student_cost(choice.pipeline)),
                              device=_device(ws), threads=_threads(ws, executor.workers), runner=family.runner,
                              progress=self.progress if isinstance(executor, InlineExecutor) else None,
                              store=ws.store.engine.url.render_as_string(hide_password=False),
                              checkpoint=time.time() + TRIAL_SHARE * clock.budget_s if cap else float("inf"))
                starting = node  # an inline executor trains inside submit: Ctrl-C lands here
                running[executor.submit(trial)] = (node, bar)
                starting = None
            store.decide(self.run_id, "stop", stop)
            return self._finish(spec, clock, stop, time.monotonic() - started)
        except KeyboardInterrupt:
            for node in [n for n, _ in running.values()] + ([starting] if starting else []):
                store.update(Node, node.id, status="interrupted", finished_at=utcnow())
            store.update(Run, self.run_id, status="interrupted", spent_s=clock.spent)
            store.decide(self.run_id, "interrupted", "stopped by the user; `--resume` continues")
            raise
        except Exception as exc:  # the run and its unfinished nodes are marked failed; a user's error keeps its line
            nodes = [n for n, _ in running.values()] + ([starting] if starting else [])
            fail_run(store, self.run_id, exc, nodes=[n.id for n in nodes], spent_s=clock.spent)
            if isinstance(exc, AdaptloopError):
                raise
            raise RunFailed(self.run_id, exc) from exc
        finally:
            if self.executor is None and executor is not None:
                executor.shutdown()
            cutoff_path(ws.root, self.run_id).unlink(missing_ok=True)  # no trial of the run runs now

    # -- steps ----------------------------------------------------------------------------
    def _state(self, spec: TaskSpec, data: Any, clock: Clock, workers: int) -> SearchState:
        store = self.ws.store
        by_node: dict[int, list[Finding]] = {}
        for f in store.findings(self.run_id):
            by_node.setdefault(f.node_id, []).append(
                Finding(kind=f.kind, summary=f.summary, severity=f.severity, target=dict(f.target or {}),
                        evidence=dict(f.evidence or {}), suggests=tuple(f.suggests or ())))
        rows = store.nodes(self.run_id)
        names = {n.id: n.name for n in rows}
        finish_order = {n.id: i for i, n in enumerate(
            sorted((n for n in rows if n.finished_at), key=lambda n: (n.finished_at, n.id)))}
        nodes = tuple(GraphNode(
            name=n.name, parent=names.get(n.parent_id) if n.parent_id else None, pipeline=n.pipeline,
            status=n.status, score=primary(n.dev_metrics, spec.primary_metric) if n.dev_metrics else 0.0,
            intervention=n.intervention, move=n.move or "", seconds=n.train_seconds,
            model_path=str(self.ws.artifacts.path(n.model_artifact)) if n.model_artifact else None,
            findings=tuple(by_node.get(n.id, ())), order=finish_order.get(n.id, 10**6 + n.id),
            dev=dict(n.dev_metrics or {}), chosen=dict(n.chosen or {}), curve=tuple(n.curve or ()),
            crashed=bool((n.eval_metrics or {}).get("crashed")), texts_per_second=n.texts_per_second)
            for n in rows)
        assert self.family is not None
        run = store.get(Run, self.run_id)
        facts = self.family.facts(self.ws, run, spec, data, rows, _device(self.ws))
        replayed = getattr(self.llm, "run_id", None)
        if replayed is not None and "learned" in facts:  # a replay knows what the replayed run knew
            facts["learned"] = portfolio.blend(portfolio.prior(spec.family, facts["n_train"], facts["n_classes"])[0],
                                               store.learned(spec.family, as_of=(replayed, self.run_id)))
        reserve = serving_reserve(self.ws, clock.budget_s) if self.promote and spec.family == "classification" else 0
        state = SearchState(nodes=nodes, seconds_left=clock.left - self.final_s, budget=clock.budget_s,
                            workers=workers, opening=not self.first, **facts,
                            min_throughput=self.ws.settings.serve.min_throughput if reserve else 0.0)
        best = graph.best(nodes)
        slow = any(state.too_slow(Pipeline.from_dict(n.pipeline)) for n in state.running()) or (
            best is not None and best.texts_per_second is not None and best.texts_per_second < state.min_throughput)
        if slow and not self.keep_back:
            self.ws.store.decide(self.run_id, "reserve", f"a model slower than [serve] min_throughput "
                                 f"{state.min_throughput:.0f} texts/s may win: {reserve:.0f}s of the budget kept back "
                                 "to distil a student of it", seconds=round(reserve, 1))
        self.keep_back = reserve if slow else 0.0
        # trials started before the reserve was kept back end by it too (banking77, 10m: a fine-tune started
        # 13 s before it ran to the search's end, and the student's 135 s went past the budget)
        publish_cutoff(self.ws.root, self.run_id, time.time() + clock.left - self.final_s - self.keep_back)
        return replace(state, seconds_left=state.seconds_left - self.keep_back,
                       student_s=0.0 if slow else reserve)

    def _timed_alone(self, state: SearchState, book: Any) -> bool:
        """Whether speeds that decide what may serve were measured again, with the cores to the search (called
        before it stops; nothing runs then). A node's speed is measured in its trial, on its share of the
        cores, often beside another trial; the best nodes on dev measured within ``CONTENTION`` times
        ``[serve] min_throughput`` (``SPEED_CHECKS`` at most, each once) are timed again, their speeds stored,
        and the search gets another round with them (a `speed` decision each). banking77, 10m: a fine-tune
        measured at 155 texts/s beside another trial made its pair with the n-gram model 148, under the limit
        of 150, so no ensemble was built; production timed the fine-tune alone at 176."""
        limit = state.min_throughput
        if limit <= 0:
            return False
        due = sorted((n for n in graph.scored(state.nodes) if n.model_path and n.strategy != "refit"
                      and n.name not in self.timed_alone and n.texts_per_second is not None
                      and limit / CONTENTION <= n.texts_per_second < limit * CONTENTION), key=lambda n: -n.score)
        if not due:
            return False
        rows = {n.name: n for n in self.ws.store.nodes(self.run_id)}
        texts = [e.text for e in book["dev"]]
        for n in due[:SPEED_CHECKS]:
            self.timed_alone.add(n.name)
            speed = model_speed(load_trained(Path(n.model_path)), texts)
            self.ws.store.update(Node, rows[n.name].id, texts_per_second=speed)
            side = "at or above" if speed >= limit else "below"
            self.ws.store.decide(self.run_id, "speed", f"'{n.name}', measured at {n.texts_per_second:.0f} texts/s "
                                 f"beside other trials, scores {speed:.0f} alone: {side} [serve] min_throughput "
                                 f"{limit:.0f}", node=n.name, texts_per_second=speed, measured=n.texts_per_second)
        return True

    def _start_node(self, p: Proposal) -> Node:
        parent_id = None
        if p.parent:
            for n in self.ws.store.nodes(self.run_id):
                if n.name == p.parent and n.status == "done":
                    parent_id = n.id
        node = self.ws.store.add(Node(run_id=self.run_id, parent_id=parent_id, name=p.name,
                                      intervention=p.intervention, reason=p.reason, move=p.move,
                                      finding=p.finding, pipeline=p.pipeline.to_dict(), status="running",
                                      proposer=p.proposer))
        self.ws.store.decide(self.run_id, p.kind, p.reason, node_id=node.id, node=p.name, proposer=p.proposer,
                             intervention=p.intervention, priority=round(p.priority, 3), **p.detail)
        return node

    def _collect(self, future: Future, node: Node, bar: Callable[[int], None], *, spec: TaskSpec,
                 book: Any) -> None:
        """Record a finished trial, diagnose it, store its outcome; record a drop as a rollback."""
        store = self.ws.store
        bar(1)
        live_score_path(self.ws.root, self.run_id, node.id).unlink(missing_ok=True)  # the store has it now
        try:
            out: TrialOutcome = future.result()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # a worker that died is a failed node, not a crashed search
            log.warning("node %s crashed: %s", node.name, exc)
            out = TrialOutcome(node.id, "crashed" if worker_died(exc) else "failed",
                               error=f"{type(exc).__name__}: {exc}"[:500])
        if out.status != "done":
            store.update(Node, node.id, status="failed", finished_at=utcnow(), train_seconds=out.train_seconds,
                         eval_metrics={"error": out.error, **({"crashed": True} if out.status == "crashed" else {})})
            return
        dev = scalars(out.dev_metrics)
        store.update(Node, node.id, status="done", dev_metrics=dev, curve=out.curve, chosen=out.chosen,
                     model_artifact=out.model_artifact, predictions_artifact=out.predictions_artifact,
                     train_seconds=out.train_seconds, texts_per_second=out.texts_per_second, finished_at=utcnow())
        if "trailing" in out.notes:
            store.decide(self.run_id, "cut", f"'{node.name}' stopped after {out.train_seconds:.0f} s: {out.notes}",
                         node_id=node.id)
        if not dev:
            return  # a refit: nothing honest to diagnose on dev
        run: Run = store.get(Run, self.run_id)
        rows = self.ws.artifacts.get_jsonl(out.predictions_artifact)
        assert self.family is not None
        findings = self.family.diagnose(self.ws, run, spec, book, node, rows, out)
        with store.session() as s:
            for f in findings:
                s.add(FindingRow(run_id=self.run_id, node_id=node.id, kind=f.kind, summary=f.summary,
                                 severity=f.severity, target=f.target, evidence=f.evidence,
                                 suggests=list(f.suggests)))
        score = primary(dev, spec.primary_metric)
        parent = store.get(Node, node.parent_id) if node.parent_id else None
        if parent is not None and parent.dev_metrics:
            gain = score - primary(parent.dev_metrics, spec.primary_metric)
            store.add(Outcome(run_id=self.run_id, node_id=node.id, family=spec.family, finding=node.finding,
                              intervention=node.move or node.name, gain=gain, cost_s=out.train_seconds))
            if gain < 0:
                store.decide(self.run_id, "rollback",
                             f"'{node.name}' ({score:.4f}) fell {-gain:.4f} below its parent '{parent.name}': "
                             "it is not expanded; the next expansion starts from the best node",
                             node_id=node.id, gain=gain)
        top = findings[0].summary if findings else "no finding"
        store.decide(self.run_id, "diagnosis", f"'{node.name}' dev {spec.primary_metric} {score:.4f}; "
                     f"{len(findings)} findings; top: {top}", node_id=node.id)

    def _finish(self, spec: TaskSpec, clock: Clock, stop: str, wall: float) -> ColdStartResult:
        ws, store = self.ws, self.ws.store
        run: Run = store.get(Run, self.run_id)
        finished = [n for n in store.nodes(self.run_id) if n.status == "done"]
        done = [n for n in finished if n.pipeline["strategy"] != "refit"]
        winner = version = None
        if done:
            top = max(done, key=lambda n: primary(n.dev_metrics, spec.primary_metric))
            selected = graph.preferred(done, lambda n: primary(n.dev_metrics, spec.primary_metric),
                                       lambda n: n.pipeline["strategy"], lambda n: n.dev_metrics or {})
            assert selected is not None
            best = refitted_form(finished, selected)
            refitted = best is not selected
            refit_id = best.id
            best = abstaining(ws, run, spec, selected, best, progress=self.progress)
            eval_set = EvalSet.from_dict(ws.artifacts.get_json(store.run_state(run).eval_artifact))
            family = self.family or family_of(spec.family)
            rows = family.score_eval(ws, best, eval_set, progress=self.progress, what="score winner on eval set")
            m = metrics_of(spec, rows)
            store.update(Node, best.id, eval_metrics=m,
                         predictions_artifact=ws.artifacts.put_jsonl(rows))
            store.decide(self.run_id, "select",
                         (f"'{selected.name}' has the best dev {spec.primary_metric} "
                          f"({primary(selected.dev_metrics, spec.primary_metric):.4f}) of {len(done)} nodes"
                          if selected is top else
                          f"the ensemble '{selected.name}' (dev {spec.primary_metric} "
                          f"{primary(selected.dev_metrics, spec.primary_metric):.4f}) is within "
                          f"{graph.ensemble_slack(top.dev_metrics or {}):.3f} of the best node '{top.name}' "
                          f"({primary(top.dev_metrics, spec.primary_metric):.4f}) of {len(done)}: an average of "
                          "models trained differently varies less off dev than one model picked on it")
                         + (f"; promoting its refit on train+dev (node {refit_id}), decided "
                                    "before either was scored on the eval set" if refitted else ""),
                         node_id=best.id)
            mv = register_node(ws, run, best, {"eval": scalars(m), "dev": selected.dev_metrics},
                               f"winner of {run.kind} run {self.run_id}")
            constant, base_rows = family.baseline(spec, eval_set, rows)
            baseline = primary(metrics_of(spec, base_rows), spec.primary_metric)
            # a model no better than a constant answer is not worth serving: the first model's gate
            # (an improve cycle's candidate faces the dev duel and the gate against production instead)
            first = first_model(spec.primary_metric, run.eval_set_id or "", len(rows), primary(m, spec.primary_metric),
                                baseline=baseline, predicts=constant,
                                ci=paired_bootstrap(spec, base_rows, rows, seed=ws.settings.train.seed))
            useless = not first.passed
            weak = first.passed and first.sets[0].ci_low <= 0
            if useless and self.promote:
                why = (f"the winner's {spec.primary_metric} on the frozen eval set, "
                       f"{primary(m, spec.primary_metric):.4f}, is no better than predicting {constant} "
                       f"({baseline:.4f}): not promoted; give it more budget, more data or a larger encoder")
                registry.refuse(store, mv.id, why, first)
                store.decide(self.run_id, "refuse", why, node_id=best.id, gate=first.to_dict())
                stop = f"{stop}; {why}"
            elif self.promote:
                registry.promote(store, mv.id, first,
                                 f"cold start: best on dev, {spec.primary_metric} {m[spec.primary_metric]:.4f} on "
                                 f"frozen eval set {run.eval_set_id}, above {baseline:.4f} for predicting {constant}")
                if weak:  # served, but the user is told it is barely a model
                    store.decide(self.run_id, "warning", f"v{mv.id} is promoted but {first.notes[-1]}; give it more "
                                 "budget, more data or a larger encoder", node_id=best.id)
            else:
                registry.nominate(store, mv.id, f"best on dev of improve run {self.run_id}; the regression gate "
                                                "decides whether it is promoted")
            version = mv.id
            winner = {"node": best.name, "node_id": best.id, "selected_on_dev": selected.name,
                      "dev": selected.dev_metrics,
                      "eval": scalars(m), "constant_baseline": {"predicts": constant, spec.primary_metric: baseline,
                                            "no_better": useless, "gain_interval": [first.sets[0].ci_low,
                                                                                    first.sets[0].ci_high],
                                            "not_beyond_noise": weak},
                      "promoted": self.promote and not useless}
            if refitted:  # for the record: the dev-selected original on the same eval set
                om = metrics_of(spec, family.score_eval(ws, selected, eval_set, progress=self.progress,
                                                        what="score original on eval set"))
                store.update(Node, selected.id, eval_metrics=om)
                winner["eval_before_refit"] = scalars(om)
        else:
            stop = stop + "; no node finished, nothing promoted"
        store.update(Run, self.run_id, status="done", spent_s=clock.spent, finished_at=utcnow())
        nodes = [_node_dict(n) for n in store.nodes(self.run_id)]
        return ColdStartResult(task_id=run.task_id, run_id=self.run_id, spec=spec,
                               eval_set_id=run.eval_set_id or "", nodes=nodes, winner=winner,
                               version=version, stop_reason=stop, wall_seconds=wall,
                               curation=store.run_state(run).curation)


def cold_start(ws: Workspace, loaded: Any, prompt: str, budget_s: float, *,
               progress: Progress = no_progress,
               make_trainer: Callable[[str], Trainer] = trainer_for,
               embed_fn: Callable[[list[str]], np.ndarray] | None | str = "encoder",
               executor: Executor | None = None, gold: Any = None, teacher: Any = None,
               llm: Any = None) -> ColdStartResult:
    """Prepare a new run of ``loaded``'s task family and search it. ``embed_fn`` feeds cleanlab (None
    skips it); ``teacher`` writes worked solutions for a generation task's math data; ``llm`` is the
    planner's client (default: from ``[llm]``)."""
    t0 = time.monotonic()
    if embed_fn == "encoder":
        embed_fn = encoder_embedder(ws, progress)
    run_id = family_of(loaded.family).prepare(ws, loaded, prompt, budget_s, progress=progress,
                                              embed_fn=embed_fn if callable(embed_fn) else None, gold=gold,
                                              teacher=teacher)
    ws.store.update(Run, run_id, spent_s=time.monotonic() - t0)
    return ColdStart(ws, run_id, progress=progress, make_trainer=make_trainer,
                     executor=executor, llm=llm).run()


def encoder_embedder(ws: Workspace, progress: Progress = no_progress,
                     what: str = "embed pool") -> Callable[[list[str]], np.ndarray]:
    """Texts → the default encoder's embeddings, through the workspace's embedding cache."""
    import torch

    from adaptloop.train.encoder import set_threads

    set_threads(ws.settings.train.threads)
    cache = embedding_cache(ws.root)
    encoder, device = ws.settings.train.encoder, torch.device(_device(ws))

    def embed(texts: list[str]) -> np.ndarray:
        return cache.get(encoder, texts, progress=progress(what, len(texts)), device=device)

    return embed


def _threads(ws: Workspace, workers: int) -> int:
    """torch threads per trial: the cores shared out between parallel workers."""
    total = ws.settings.train.threads or os.cpu_count() or 1
    return max(1, total // max(1, workers))


def _device(ws: Workspace) -> str:
    from adaptloop.train.encoder import pick_device

    return str(pick_device(ws.settings.train.device))


def resumable_run(ws: Workspace, budget_s: float | None = None) -> int:
    """The latest run that did not finish, marked running again; ``budget_s``: what it may still spend
    (default: what its budget has left). With 0 it trains nothing more: it selects and promotes the
    best node finished so far.

    Raises:
        NotFoundError: there is none.
    """
    rows = ws.store.all(select(Run).where(Run.status.not_in(("done", "failed", "abandoned")), Run.kind == "coldstart")
                        .order_by(Run.id.desc()))
    if not rows:
        raise NotFoundError("no interrupted run to resume in this workspace; start one with "
                            "`adaptloop new PROMPT --data FILE`")
    run = rows[0]
    if not run.state:
        ws.store.update(Run, run.id, status="abandoned", finished_at=utcnow())
        raise NotFoundError(f"run {run.id} was stopped before its data was prepared; start "
                            "again with `adaptloop new PROMPT --data FILE`")
    for n in ws.store.nodes(run.id):
        if n.status == "running":
            ws.store.update(Node, n.id, status="interrupted", finished_at=utcnow())
    left = run.budget_s - run.spent_s if budget_s is None else max(0.0, budget_s)
    ws.store.update(Run, run.id, status="running", budget_s=run.spent_s + left)
    ws.store.decide(run.id, "resume", f"resumed with {left:.0f}s left" + (
        "" if budget_s is None else f" (--budget; its own budget had {run.budget_s - run.spent_s:.0f}s left)")
        + (": nothing more is trained; the best node so far is selected" if left <= 0 else ""))
    return run.id
