"""The cold-start loop: data → frozen eval set → curation → doctrine-guided search → promote.

Order matters and is recorded: the eval set is written to the store before any node is
trained, and every node, removal and decision carries a timestamp and a reason.
Ctrl-C leaves the store consistent (the running node is marked ``interrupted``);
``resume_cold_start`` continues the same run with the budget that was left.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select

from adaptloop.agent.budget import Clock
from adaptloop.agent.doctrine import DoctrinePolicy, Facts, Proposal
from adaptloop.agent.refit import RefitPlan, refit, refit_cost, refit_plan
from adaptloop.agent.spec import infer_spec
from adaptloop.data import curate
from adaptloop.data.augment import augment
from adaptloop.data.sources import Loaded
from adaptloop.data.split import stratified_split
from adaptloop.errors import NotFoundError
from adaptloop.evaluate.metrics import primary
from adaptloop.evaluate.rows import metrics_of, score_rows
from adaptloop.store import registry
from adaptloop.store.db import (
    Dataset,
    EvalSetRow,
    Node,
    Quarantine,
    Removal,
    Run,
    Task,
    utcnow,
)
from adaptloop.train import FitContext, Trainer, load_trained, trainer_for
from adaptloop.train.base import Progress, TrainedModel, no_progress
from adaptloop.types import EvalSet, Example, NodeResult, Pipeline, TaskSpec
from adaptloop.workspace import Workspace

log = logging.getLogger(__name__)

FINAL_RESERVE_S = 20.0  # budget kept back for scoring the winner on the eval set
MIN_NODE_S = 10.0  # no new node starts with less than this left (the first one always runs)


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


def _rows(examples: Sequence[Example]) -> list[dict[str, Any]]:
    return [e.to_dict() for e in examples]


def _examples(ws: Workspace, address: str) -> list[Example]:
    return [Example.from_dict(r) for r in ws.artifacts.get_jsonl(address)]


def _store_dataset(ws: Workspace, task_id: int, role: str, examples: Sequence[Example],
                   source: str = "") -> str:
    address = ws.artifacts.put_jsonl(_rows(examples))
    did = f"{role}:{address[:24]}"
    if ws.store.get(Dataset, did) is None:
        ws.store.add(Dataset(id=did, task_id=task_id, role=role, source=source,
                             artifact=address, n=len(examples)))
    return address


def _record_drops(ws: Workspace, task_id: int, examples: Sequence[Example],
                  drops: Sequence[curate.Drop]) -> None:
    with ws.store.session() as s:
        for d in drops:
            e = examples[d.index]
            s.add(Removal(task_id=task_id, example_id=e.id, text=e.text, label=e.label,
                          reason=d.reason, detail=d.detail))


def prepare(ws: Workspace, loaded: Loaded, prompt: str, budget_s: float, *,
            progress: Progress = no_progress, embed_fn: Callable[[list[str]], np.ndarray] | None = None,
            ) -> tuple[int, int]:
    """Validate, then write task, datasets, the frozen eval set and curation. Returns ids.

    Nothing is written when the data fails validation (``infer_spec`` raises first).
    """
    settings = ws.settings
    spec = infer_spec(prompt, loaded.examples, source=loaded.source)
    task = ws.store.add(Task(name=spec.name, prompt=prompt, family=spec.family,
                             spec=spec.to_dict()))
    run = ws.store.add(Run(task_id=task.id, kind="coldstart", budget_s=budget_s, state={}))
    with ws.store.session() as s:
        for q in loaded.quarantined:
            s.add(Quarantine(source=loaded.source, line_no=q.line_no, raw=q.raw, reason=q.reason))
    if loaded.quarantined:
        ws.store.decide(run.id, "quarantine", f"{len(loaded.quarantined)} malformed lines "
                        f"quarantined from {loaded.source}")
    source = list(loaded.examples)
    _store_dataset(ws, task.id, "source", source, loaded.source)

    # 1. exact duplicates over everything, so no copy can straddle eval and train
    drops = curate.find_exact_duplicates(source)
    _record_drops(ws, task.id, source, drops)
    deduped = curate.apply_drops(source, drops)

    # 2. the eval set, frozen before any training
    seed = settings.train.seed
    held, pool = stratified_split(deduped, fraction=settings.agent.eval_fraction, seed=seed,
                                  max_n=settings.agent.eval_max)
    eval_set = EvalSet(tuple(held))
    eval_address = ws.artifacts.put_json(eval_set.to_dict())
    if ws.store.get(EvalSetRow, eval_set.id) is None:
        ws.store.add(EvalSetRow(id=eval_set.id, task_id=task.id, artifact=eval_address,
                                n=len(held), report=curate.class_balance(held)))
    ws.store.update(Run, run.id, eval_set_id=eval_set.id)
    ws.store.decide(run.id, "eval_set_frozen",
                    f"eval set {eval_set.id}: {len(held)} examples, stratified over "
                    f"{len(set(e.label for e in held))} classes, frozen before any training")

    # 3. decontaminate the pool against the eval set, then near-duplicates within it
    bar = progress("decontaminate", 2)
    drops = curate.find_eval_overlap(pool, held)
    _record_drops(ws, task.id, pool, drops)
    pool = curate.apply_drops(pool, drops)
    bar(1)
    near = curate.find_near_duplicates(pool)
    _record_drops(ws, task.id, pool, near)
    pool = curate.apply_drops(pool, near)
    bar(1)

    # 4. dev split from the pool (never from the eval set)
    dev, train = stratified_split(pool, fraction=settings.agent.dev_fraction, seed=seed + 1)

    # 5. label issues on out-of-fold probabilities of the cheapest backend
    n_issues, curated = 0, list(train)
    if embed_fn is not None and len(train) >= 20:
        from adaptloop.train.frozen import out_of_fold_proba

        x = embed_fn([e.text for e in train])
        y = np.array([spec.labels.index(e.label) for e in train])
        probs = out_of_fold_proba(x, y, len(spec.labels), seed=seed,
                                  progress=progress("cleanlab (out-of-fold)", 5))
        issues = curate.find_label_issues(y, probs)
        _record_drops(ws, task.id, train, issues)
        curated = curate.apply_drops(train, issues)
        n_issues = len(issues)
    balance = curate.class_balance(train)
    state = {
        "spec": spec.to_dict(),
        "datasets": {
            "raw": _store_dataset(ws, task.id, "train", train),
            "curated": _store_dataset(ws, task.id, "curated", curated),
            "augmented": _store_dataset(ws, task.id, "augmented", augment(train, seed=seed)),
            "dev": _store_dataset(ws, task.id, "dev", dev),
        },
        "eval_artifact": eval_address,
        "curation": {
            "source": len(source), "exact_or_conflicting_duplicates": len(source) - len(deduped),
            "eval": len(held), "eval_overlap": len(drops), "near_duplicates": len(near),
            "dev": len(dev), "train": len(train), "label_issues": n_issues,
            "balance": {k: v for k, v in balance.items() if k != "counts"},
        },
    }
    ws.store.update(Run, run.id, state=state)
    ws.store.decide(run.id, "curation", "removed duplicates, eval overlap and label issues",
                    **state["curation"])
    return task.id, run.id


def _node_dict(n: Node) -> dict[str, Any]:
    return {"id": n.id, "name": n.name, "parent_id": n.parent_id, "status": n.status,
            "intervention": n.intervention, "reason": n.reason, "pipeline": n.pipeline,
            "dev": n.dev_metrics, "eval": n.eval_metrics,
            "train_seconds": round(n.train_seconds, 1),
            "started_at": n.started_at.isoformat(),
            "finished_at": n.finished_at.isoformat() if n.finished_at else None}


class ColdStart:
    """Runs the search for one prepared run.

    Args:
        ws: the workspace.
        run_id: a prepared (or interrupted) run.
        progress: progress-bar factory.
        make_trainer: strategy -> Trainer (the seam tests fill with a fake).
        policy: the doctrine policy.
    """

    def __init__(self, ws: Workspace, run_id: int, *, progress: Progress = no_progress,
                 make_trainer: Callable[[str], Trainer] = trainer_for,
                 policy: DoctrinePolicy | None = None, cache: object | None = None) -> None:
        self.ws = ws
        self.cache = cache
        self.run_id = run_id
        self.progress = progress
        self.make_trainer = make_trainer
        self.policy = policy or DoctrinePolicy(plateau_rounds=ws.settings.agent.plateau_rounds)

    def run(self) -> ColdStartResult:
        ws, store = self.ws, self.ws.store
        run: Run = store.get(Run, self.run_id)
        spec = TaskSpec.from_dict(run.state["spec"])
        clock = Clock(run.budget_s, spent=run.spent_s)
        started = time.monotonic()
        ds = {k: _examples(ws, v) for k, v in run.state["datasets"].items()}
        cache = self.cache
        current: Node | None = None
        stop = ""
        try:
            while True:
                facts = self._facts(spec, ds, clock)
                choice = self.policy.propose(facts)
                if isinstance(choice, str):
                    stop = choice
                    break
                if facts.done() and clock.left < FINAL_RESERVE_S + MIN_NODE_S:
                    stop = "budget spent"
                    break
                current = self._start_node(choice)
                self._train_node(current, spec, choice, ds, clock, cache)
                current = None
                store.update(Run, self.run_id, spent_s=clock.spent)
            store.decide(self.run_id, "stop", stop)
            return self._finish(spec, clock, stop, time.monotonic() - started)
        except KeyboardInterrupt:
            if current is not None:
                store.update(Node, current.id, status="interrupted", finished_at=utcnow())
            store.update(Run, self.run_id, status="interrupted", spent_s=clock.spent)
            store.decide(self.run_id, "interrupted", "stopped by the user; `--resume` continues")
            raise

    # -- steps ----------------------------------------------------------------------------
    def _facts(self, spec: TaskSpec, ds: dict[str, list[Example]], clock: Clock) -> Facts:
        nodes = []
        for n in self.ws.store.nodes(self.run_id):
            score = primary(n.dev_metrics, spec.primary_metric) if n.dev_metrics else 0.0
            path = str(self.ws.artifacts.path(n.model_artifact)) if n.model_artifact else None
            nodes.append({"name": n.name, "pipeline": n.pipeline, "status": n.status,
                          "score": score, "model_path": path})
        return Facts(nodes=tuple(nodes), n_train=len(ds["raw"]), refit_seconds=self._refit_cost(ds),
                     n_label_issues=len(ds["raw"]) - len(ds["curated"]),
                     n_classes=len(spec.labels), seconds_left=clock.left - FINAL_RESERVE_S,
                     encoder=self.ws.settings.train.encoder, seed=self.ws.settings.train.seed,
                     larger_encoder=self._larger_encoder())

    def _refit_plan(self) -> RefitPlan | None:
        spec = TaskSpec.from_dict(self.ws.store.get(Run, self.run_id).state["spec"])
        return refit_plan(self.ws.store.nodes(self.run_id), spec)

    def _refit_cost(self, ds: dict[str, list[Example]]) -> float | None:
        plan = self._refit_plan()
        return refit_cost(plan, len(ds["raw"]), len(ds["dev"])) if plan else None

    def _refit(self, spec: TaskSpec, ds: dict[str, list[Example]], ctx: FitContext,
               ) -> tuple[TrainedModel, NodeResult]:
        plan = self._refit_plan()
        if plan is None:
            raise RuntimeError("nothing to refit")
        return refit(plan, spec, ds, ctx, self.make_trainer)

    def _larger_encoder(self) -> str | None:
        """The next installed rung above the default encoder on the ladder, if any."""
        from adaptloop.train.packaged import is_available

        ladder = self.ws.settings.train.ladder
        enc = self.ws.settings.train.encoder
        above = ladder[ladder.index(enc) + 1:] if enc in ladder else []
        return next((name for name in above if is_available(name)), None)

    def _start_node(self, p: Proposal) -> Node:
        parent_id = None
        if p.parent:
            for n in self.ws.store.nodes(self.run_id):
                if n.name == p.parent and n.status == "done":
                    parent_id = n.id
        return self.ws.store.add(Node(run_id=self.run_id, parent_id=parent_id, name=p.name,
                                      intervention=p.intervention, reason=p.reason,
                                      pipeline=p.pipeline.to_dict(), status="running"))

    def _train_node(self, node: Node, spec: TaskSpec, p: Proposal,
                    ds: dict[str, list[Example]], clock: Clock, cache: object) -> None:
        ws = self.ws
        pipe: Pipeline = p.pipeline
        ctx = FitContext(deadline=clock.deadline(FINAL_RESERVE_S), progress=self.progress,
                         device=_device(ws), embeddings=cache)
        t0 = time.monotonic()
        try:
            if pipe.strategy == "refit":
                model, result = self._refit(spec, ds, ctx)
            else:
                model, result = self.make_trainer(pipe.strategy).fit(spec, pipe, ds[pipe.recipe],
                                                                     ds["dev"], ctx)
        except (RuntimeError, ValueError) as exc:  # a failed pipeline is a result, not a crash
            log.warning("node %s failed: %s", p.name, exc)
            ws.store.update(Node, node.id, status="failed", finished_at=utcnow(),
                            train_seconds=time.monotonic() - t0,
                            eval_metrics={"error": str(exc)[:500]})
            return
        staging = ws.artifacts.staging_dir()
        try:
            model.save(staging)
            address = ws.artifacts.put_dir(staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        dev_metrics: dict[str, Any] = {}
        predictions = None
        if pipe.strategy != "refit":  # a refit trained on dev: its dev score would be a lie
            dev_rows = score_rows(model, ds["dev"], progress=self.progress,
                                  what=f"score {p.name} on dev")
            dev_metrics = metrics_of(spec, dev_rows)
            dev_metrics.pop("per_class")
            predictions = ws.artifacts.put_jsonl(dev_rows)
        ws.store.update(Node, node.id, status="done", dev_metrics=dev_metrics,
                        curve=result.curve, chosen=result.chosen, model_artifact=address,
                        predictions_artifact=predictions,
                        train_seconds=time.monotonic() - t0, finished_at=utcnow())

    def _finish(self, spec: TaskSpec, clock: Clock, stop: str, wall: float) -> ColdStartResult:
        ws, store = self.ws, self.ws.store
        run: Run = store.get(Run, self.run_id)
        finished = [n for n in store.nodes(self.run_id) if n.status == "done"]
        done = [n for n in finished if n.pipeline["strategy"] != "refit"]
        winner = version = None
        if done:
            selected = max(done, key=lambda n: primary(n.dev_metrics, spec.primary_metric))
            refits = [n for n in finished if n.pipeline["strategy"] == "refit"
                      and n.pipeline["hparams"].get("of") == selected.name]
            best = refits[-1] if refits else selected
            eval_set = EvalSet.from_dict(ws.artifacts.get_json(run.state["eval_artifact"]))
            model = load_trained(ws.artifacts.path(best.model_artifact))
            rows = score_rows(model, eval_set.examples, progress=self.progress,
                              what="score winner on eval set")
            m = metrics_of(spec, rows)
            store.update(Node, best.id, eval_metrics=m,
                         predictions_artifact=ws.artifacts.put_jsonl(rows))
            store.decide(self.run_id, "select",
                         f"'{selected.name}' has the best dev {spec.primary_metric} "
                         f"({primary(selected.dev_metrics, spec.primary_metric):.4f}) of {len(done)} "
                         "nodes" + (f"; promoting its refit on train+dev (node {best.id}), decided "
                                    "before either was scored on the eval set" if refits else ""),
                         node_id=best.id)
            mv = registry.register(
                store, task_id=run.task_id, node_id=best.id, artifact=best.model_artifact,
                metrics={"eval": {k: v for k, v in m.items() if k != "per_class"},
                         "dev": selected.dev_metrics},
                lineage={"run_id": self.run_id, "eval_set": run.eval_set_id,
                         "datasets": run.state["datasets"], "pipeline": best.pipeline},
                reason=f"winner of cold-start run {self.run_id}")
            registry.set_alias(store, mv.id, "production", event="promoted",
                               reason=f"cold start: best on dev, {spec.primary_metric} "
                                      f"{m[spec.primary_metric]:.4f} on frozen eval set "
                                      f"{run.eval_set_id}")
            version = mv.id
            winner = {"node": best.name, "node_id": best.id, "selected_on_dev": selected.name,
                      "dev": selected.dev_metrics,
                      "eval": {k: v for k, v in m.items() if k != "per_class"}}
            if refits:  # for the record: the dev-selected original on the same eval set
                orig = load_trained(ws.artifacts.path(selected.model_artifact))
                om = metrics_of(spec, score_rows(orig, eval_set.examples, progress=self.progress,
                                                 what="score original on eval set"))
                store.update(Node, selected.id, eval_metrics=om)
                winner["eval_before_refit"] = {k: v for k, v in om.items() if k != "per_class"}
        else:
            stop = stop + "; no node finished, nothing promoted"
        store.update(Run, self.run_id, status="done", spent_s=clock.spent, finished_at=utcnow())
        nodes = [_node_dict(n) for n in store.nodes(self.run_id)]
        return ColdStartResult(task_id=run.task_id, run_id=self.run_id, spec=spec,
                               eval_set_id=run.eval_set_id or "", nodes=nodes, winner=winner,
                               version=version, stop_reason=stop, wall_seconds=wall,
                               curation=run.state.get("curation", {}))


def cold_start(ws: Workspace, loaded: Loaded, prompt: str, budget_s: float, *,
               progress: Progress = no_progress,
               make_trainer: Callable[[str], Trainer] = trainer_for,
               embed_fn: Callable[[list[str]], np.ndarray] | None | str = "encoder",
               ) -> ColdStartResult:
    """Prepare a new run and search it. ``embed_fn`` feeds cleanlab (None skips it)."""
    t0 = time.monotonic()
    cache = None
    if embed_fn == "encoder":
        import torch

        from adaptloop.train.encoder import EmbeddingCache, set_threads

        set_threads(ws.settings.train.threads)
        cache = EmbeddingCache()
        encoder, device = ws.settings.train.encoder, torch.device(_device(ws))

        def embed_fn(texts: list[str]) -> np.ndarray:
            return cache.get(encoder, texts, progress=progress("embed pool", len(texts)),
                             device=device)

    _, run_id = prepare(ws, loaded, prompt, budget_s, progress=progress,
                        embed_fn=embed_fn if callable(embed_fn) else None)
    ws.store.update(Run, run_id, spent_s=time.monotonic() - t0)
    return ColdStart(ws, run_id, progress=progress, make_trainer=make_trainer,
                     cache=cache).run()


def _device(ws: Workspace) -> str:
    from adaptloop.train.encoder import pick_device

    return str(pick_device(ws.settings.train.device))


def resumable_run(ws: Workspace) -> int:
    """The latest run that did not finish.

    Raises:
        NotFoundError: there is none.
    """
    rows = ws.store.all(select(Run).where(Run.status != "done").order_by(Run.id.desc()))
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
    ws.store.update(Run, run.id, status="running")
    ws.store.decide(run.id, "resume", f"resumed with {run.budget_s - run.spent_s:.0f}s left")
    return run.id
