"""What a task family supplies to the one loop (``agent.coldstart.ColdStart``).

The loop proposes, runs trials, diagnoses, selects on dev, gates and promotes the same way for
every family; a family supplies the pieces that differ:

- ``prepare``: read the user's data into a run (spec, frozen eval set, curated splits);
- ``data``: the run's training data as its trials and its diagnosis read it;
- ``facts``: what its policy sees beyond the graph and the clock (``SearchState`` fields);
- ``policy``: its default policy (the doctrine for labelled data, the generation plan);
- ``runner``: the trial function (train, save, score dev) the executor runs;
- ``diagnose``: findings from a node's scored dev rows;
- ``score_eval`` and ``baseline``: the winner's rows on the frozen eval set, and what the best
  constant answer scores on the same rows (the first model's gate).

``family_of(name)`` is the only place a family name picks code. Generation lives in
``agent.generation``; classification and extraction share a doctrine and a trial, and differ in
their diagnosis and their cleanlab step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from adaptloop.agent.doctrine import DoctrinePolicy
from adaptloop.agent.executor import Trial, TrialOutcome, train_trial
from adaptloop.agent.generation import GENERATION
from adaptloop.agent.llm_policy import LLMPolicy
from adaptloop.agent.policy import Policy
from adaptloop.agent.predict import embedding_cache, score_rows
from adaptloop.agent.prepare import prepare, recipe_book
from adaptloop.agent.refit import refit_cost, refit_plan
from adaptloop.data import recipes
from adaptloop.data.llm import LLMClient
from adaptloop.data.recipes import RecipeBook
from adaptloop.diagnose.entities import diagnose_entities
from adaptloop.diagnose.findings import diagnose, training_vocabulary
from adaptloop.evaluate.rows import constant_rows
from adaptloop.search import portfolio
from adaptloop.store.db import LLMCall, Node, Run
from adaptloop.train import load_trained
from adaptloop.train.base import Progress, no_progress
from adaptloop.types import EvalSet, Finding, Pipeline, TaskSpec
from adaptloop.workspace import Workspace

Row = dict[str, Any]


class Family(Protocol):
    name: str
    parallel: bool  # trials may run side by side (False: one at a time, e.g. a causal LM on CPU)
    improves: bool  # an improve cycle can retrain it from production traffic

    def prepare(self, ws: Workspace, loaded: Any, prompt: str, budget_s: float, *, progress: Progress,
                embed_fn: Callable[[list[str]], np.ndarray] | None, gold: Any, teacher: Any) -> int: ...

    def data(self, ws: Workspace, run: Run) -> Any: ...

    def facts(self, ws: Workspace, run: Run, spec: TaskSpec, data: Any, rows: Sequence[Node],
              device: str) -> dict[str, Any]: ...

    def policy(self, ws: Workspace, run: Run, data: Any, llm: Any = None) -> Policy: ...

    runner: Callable[[Trial], TrialOutcome]

    def diagnose(self, ws: Workspace, run: Run, spec: TaskSpec, data: Any, node: Node, rows: list[Row],
                 out: TrialOutcome) -> list[Finding]: ...

    def score_eval(self, ws: Workspace, node: Node, eval_set: EvalSet, *, progress: Progress,
                   what: str) -> list[Row]: ...

    def baseline(self, spec: TaskSpec, eval_set: EvalSet, rows: list[Row]) -> tuple[str, list[Row]]: ...


class Labelled:
    """Classification and extraction: examples with labels or spans, the recipe book, the doctrine."""

    parallel = True
    improves = True
    runner = staticmethod(train_trial)

    def __init__(self, name: str) -> None:
        self.name = name
        self._vocab: dict[int, frozenset[str]] = {}
        self._rates: dict[int, dict[str, float]] = {}
        self._priors: dict[int, tuple] = {}  # run → its portfolio prior (table, datasets), recorded once

    def prepare(self, ws: Workspace, loaded: Any, prompt: str, budget_s: float, *, progress: Progress = no_progress,
                embed_fn: Callable[[list[str]], np.ndarray] | None = None, gold: Any = None,
                teacher: Any = None) -> int:
        return prepare(ws, loaded, prompt, budget_s, progress=progress, embed_fn=embed_fn, gold=gold)[1]

    def data(self, ws: Workspace, run: Run) -> RecipeBook:
        return recipe_book(ws, run)

    def facts(self, ws: Workspace, run: Run, spec: TaskSpec, data: RecipeBook, rows: Sequence[Node],
              device: str) -> dict[str, Any]:
        settings = ws.settings
        plan = refit_plan(rows, spec) if not any(n.status == "running" for n in rows) else None
        return dict(
            encoder=settings.train.encoder, n_train=len(data.raw), n_classes=len(spec.labels),
            n_label_issues=len(data.issue_ids), ladder=_ladder(ws, spec.family), oos_label=spec.out_of_scope_label,
            feature_encoder=_feature_encoder(ws, spec.family),
            abstain_share=settings.serve.abstain_share, seed=settings.train.seed,
            learned=self._learned(ws, run, spec, len(data.raw)),
            # classification on CPU has a frozen larger rung; extraction's larger rung is a tagger to
            # fine-tune (its frozen-tagger is another move), so there it competes on its (size-scaled) cost
            trainable=None if device != "cpu" or self.name == "extraction" else (settings.train.encoder,),
            refit_seconds=refit_cost(plan, len(data.raw), len(data.dev)) if plan else None,
            refit_frozen_seconds=refit_cost(plan, len(data.raw), len(data.dev), keep_trained=True) if plan else None,
            target=settings.search.target or None, family=spec.family,
            **self._costs(ws, run, data, device))

    def _learned(self, ws: Workspace, run: Run, spec: TaskSpec, n_train: int) -> dict[str, tuple]:
        """What the workspace's runs learned, on top of the shipped portfolio prior for a task of this
        size (``search.portfolio``); the prior is worked out and recorded (a ``prior`` decision) once per run."""
        if run.id not in self._priors:
            table, datasets = self._priors[run.id] = portfolio.prior(spec.family, n_train, len(spec.labels))
            top = sorted(table.items(), key=lambda kv: -kv[1][1])
            ws.store.decide(run.id, "prior", (
                f"the shipped portfolio starts the learned table from {', '.join(datasets)} "
                f"(tasks of similar size and class count): " + "; ".join(
                    f"{k} {g:+.4f} (weight {n:.1f})" for k, (n, g, _c) in top)) if table else
                "no benchmark task in the shipped portfolio is like this one: the doctrine starts from its "
                "regimes alone", datasets=datasets, table={k: [round(x, 4) for x in v] for k, v in table.items()})
        return portfolio.blend(self._priors[run.id][0], ws.store.learned(spec.family))

    def _costs(self, ws: Workspace, run: Run, data: RecipeBook, device: str) -> dict[str, float]:
        """The search's cost rates, from each rung's speed measured on this machine and the task's texts
        (``train.machine_speed``; once per machine, then cached), recorded as a ``costs`` decision."""
        if run.id in self._rates:
            return self._rates[run.id]
        from adaptloop.train.machine_speed import encoder_speeds, padded_tokens

        ladder = _ladder(ws, self.name)
        texts = [e.text for e in data.raw[:256]]
        threads = ws.settings.train.threads or os.cpu_count() or 1
        features = _feature_encoder(ws, self.name)
        speeds = encoder_speeds([*ladder[:2], *([features] if features and features not in ladder[:2] else [])],
                                texts, device=device, threads=threads)
        base = speeds.get(ladder[0])
        rates: dict[str, float] = {}
        if base is not None:
            tokens = padded_tokens(ladder[0], texts)
            rates = {"sec_per_step": base.step_seconds(32, tokens),  # a classifier's batch
                     "tagger_sec_per_step": base.step_seconds(16, tokens)}  # a tagger's
            large = speeds.get(ladder[1]) if len(ladder) > 1 else None
            if large is not None:
                rates["larger_slowdown"] = large.step_seconds(16, tokens) / base.step_seconds(16, tokens)
                rates["embed_rate_large"] = large.texts_per_second(padded_tokens(ladder[1], texts))
            if features in speeds:
                rates["embed_rate_features"] = speeds[features].texts_per_second(padded_tokens(features, texts))
            ws.store.decide(run.id, "costs", "measured on this machine: " + "; ".join(
                f"{s.encoder.split('/')[-1]} {s.tokens_per_second:.0f} tokens/s forward, "
                f"a training step {s.step_seconds_fixed:.2f} s + {1000 * s.step_seconds_per_token:.2f} ms a token"
                + (" (timed while other processes held "
                   + (f"{s.others:.1f} cores" if s.others is not None else f"{1 - s.cpu_share:.0%} of the threads")
                   + ": used by this run, not cached)" if s.contended else "")
                for s in speeds.values())
                + f"; the task's texts pad to {tokens:.1f} tokens", **{k: round(v, 3) for k, v in rates.items()},
                machine=base.key)
        self._rates[run.id] = rates
        return rates

    def policy(self, ws: Workspace, run: Run, data: Any, llm: Any = None) -> Policy:
        """The doctrine; with an LLM client (``llm``, else one for ``[llm] url``), the LLM planner with the
        doctrine as its fallback."""
        doctrine = DoctrinePolicy(plateau_rounds=ws.settings.agent.plateau_rounds, c0=ws.settings.search.exploration)
        client = llm or LLMClient.from_settings(ws.settings.llm)
        if client is None:
            return doctrine
        run_id = run.id
        return LLMPolicy(doctrine, client, record=lambda r: ws.store.add(LLMCall(run_id=run_id, **r)),
                         max_tokens_per_run=ws.settings.llm.max_tokens_per_run)

    def diagnose(self, ws: Workspace, run: Run, spec: TaskSpec, data: RecipeBook, node: Node, rows: list[Row],
                 out: TrialOutcome) -> list[Finding]:
        pipe = Pipeline.from_dict(node.pipeline)
        noisy = "clean" not in recipes.parse(pipe.recipe) if pipe.recipe != "train+dev" else False
        issues = list(ws.store.run_state(run).label_issues or ()) if noisy else None
        dev = out.dev_metrics
        if self.name == "extraction":
            return diagnose_entities(rows, list(spec.labels), curve=out.curve, dev_f1=dev.get("f1"),
                                     label_issues=issues, n_train=len(data.raw)).findings
        if run.id not in self._vocab:
            self._vocab[run.id] = training_vocabulary(e.text for e in data.raw)
        return diagnose(rows, list(spec.labels), curve=out.curve, dev_accuracy=dev.get("accuracy"),
                        label_issues=issues, n_train=len(data.raw), vocabulary=self._vocab[run.id]).findings

    def score_eval(self, ws: Workspace, node: Node, eval_set: EvalSet, *, progress: Progress = no_progress,
                   what: str = "score winner on eval set") -> list[Row]:
        model = load_trained(ws.artifacts.path(node.model_artifact), embeddings=embedding_cache(ws.root))
        return score_rows(model, eval_set.examples, progress=progress, what=what)

    def baseline(self, spec: TaskSpec, eval_set: EvalSet, rows: list[Row]) -> tuple[str, list[Row]]:
        return constant_rows(rows)


def _ladder(ws: Workspace, family: str) -> tuple[str, ...]:
    """The installed rungs of the family's encoder ladder (the default encoder first if it is on it)."""
    from adaptloop.train.packaged import is_available

    ladder = ws.settings.train.extraction_ladder if family == "extraction" else ws.settings.train.ladder
    enc = ws.settings.train.encoder
    rungs = ladder[ladder.index(enc):] if enc in ladder else [enc]
    return tuple(r for r in rungs if r == enc or is_available(r))


def _feature_encoder(ws: Workspace, family: str) -> str | None:
    """Extraction's ``[train] feature_encoder`` when it is set and installed (a frozen-tagger reads it)."""
    from adaptloop.train.packaged import is_available

    enc = ws.settings.train.feature_encoder
    return enc if family == "extraction" and enc and is_available(enc) else None


def family_of(name: str) -> Family:
    """The family module for a task family's name."""
    if name == "generation":
        return GENERATION
    if name in ("classification", "extraction"):
        return Labelled(name)
    raise ValueError(f"unknown task family {name!r}; use classification, extraction or generation")
