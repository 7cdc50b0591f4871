"""Refit: the pipeline selected on dev, trained again on train + dev.

Selection needs a held-out dev split; the final model does not. Once the search has chosen
a pipeline (for an ensemble: every member and its weight), the same pipeline is retrained
with the dev examples added, using the hyperparameters the original fit settled on (C,
epochs). There is no dev split left to stop on, so a fine-tune runs its chosen number of
epochs; a refit that the budget would cut short fails, and the original is promoted.

When the budget left fits no full refit of an ensemble whose members are in part trained (a
fine-tune takes minutes), its frozen members alone are refitted (seconds: logistic regression on
cached embeddings; a frozen tagger's head on the features the run stored) and the trained ones kept
as they are (``keep_trained``): a logistic regression on frozen embeddings gains from every example
it sees (the banking77 fixed recipe's, fitted on all of train, is part of why it leads), and the
ensemble keeps its weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from adaptloop.evaluate.metrics import primary
from adaptloop.search import graph
from adaptloop.search.interventions import TRAINED
from adaptloop.store.db import Node
from adaptloop.train import FitContext, TrainedModel, Trainer
from adaptloop.types import Example, NodeResult, Pipeline, TaskSpec

GROWTH_MARGIN = 1.1  # refit cost estimate: original seconds × data growth × this
FROZEN_REFIT_S = 20.0  # a frozen member refits from cached embeddings in seconds (at most its first fit's time)
TUNED_ON_DEV = ("threshold", "span-threshold")


def refit_pipeline(of: str, encoder: str, seed: int, *, keep_trained: bool) -> tuple[Pipeline, str]:
    """The pipeline of a refit of node ``of`` on train + dev (with ``keep_trained``, of its frozen and n-gram
    members only) and its intervention, as the search and serving propose it."""
    pipeline = Pipeline("train+dev", "refit", encoder, {"of": of, **({"keep_trained": True} if keep_trained else {})},
                        seed)
    return pipeline, "refit on train+dev" + (" (frozen members)" if keep_trained else "")


@dataclass(frozen=True)
class RefitPlan:
    selected: Node
    members: list[tuple[Node, float]]  # (node, ensemble weight); one member with 1.0 otherwise


def refit_plan(nodes: Sequence[Node], spec: TaskSpec, *, again: bool = False) -> RefitPlan | None:
    """What to refit: the best finished node on dev, unless it was refitted (or tried) already.

    ``again``: the plan even when it was refitted before, skipping pipelines tuned on dev
    (thresholds) — the recipe to retrain on other data (the AdaptFT bench's naive baseline).
    """
    tried = [n for n in nodes if n.status in ("done", "failed")]
    scored = [n for n in tried if n.status == "done" and n.dev_metrics and n.pipeline["strategy"] != "refit"
              and not (again and n.pipeline["strategy"] in TUNED_ON_DEV)]
    if not scored:
        return None
    best = graph.preferred(scored, lambda n: primary(n.dev_metrics, spec.primary_metric),
                           lambda n: n.pipeline["strategy"], lambda n: n.dev_metrics or {})
    assert best is not None
    if best.pipeline["strategy"] in TUNED_ON_DEV:
        return None  # tuned on dev: there is nothing left to tune it on
    if not again and any(is_refit_of(n, best.name) for n in tried):
        return None
    return plan_of(best, scored)


def plan_of(node: Node, nodes: Sequence[Node]) -> RefitPlan:
    """The refit of ``node``: itself, or the members of an ensemble that carry weight (found in ``nodes``)."""
    if node.pipeline["strategy"] != "ensemble":
        return RefitPlan(node, [(node, 1.0)])
    by_name = {n.name: n for n in nodes}
    names = node.pipeline["hparams"]["member_names"]
    pairs = zip(names, (node.chosen or {}).get("weights") or [1 / len(names)] * len(names))
    return RefitPlan(node, [(by_name[name], w) for name, w in pairs if w > 0 and name in by_name])


def is_refit_of(node: Node, name: str) -> bool:
    """Whether ``node`` retrains the pipeline of the node called ``name`` on train + dev."""
    return node.pipeline["strategy"] == "refit" and node.pipeline["hparams"].get("of") == name


def refitted_form(finished: Sequence[Node], node: Node) -> Node:
    """What serves for ``node``: its last finished refit on train + dev among ``finished``, else itself."""
    refits = [n for n in finished if n.status == "done" and is_refit_of(n, node.name)]
    return refits[-1] if refits else node


def refit_cost(plan: RefitPlan, n_train: int, n_dev: int, *, keep_trained: bool = False) -> float | None:
    """Estimated seconds: trained members scale with the data, frozen ones are near free.
    ``keep_trained``: the cost of refitting the frozen members alone, None when that would refit
    nothing or everything (no frozen member, or no trained one to keep)."""
    trained = [m for m, _ in plan.members if m.pipeline["strategy"] in TRAINED]
    grow = (n_train + n_dev) / max(1, n_train)

    def frozen(m: Node) -> float:  # from cached embeddings, plus the part of train a cut fit never embedded
        if m.pipeline["strategy"] == "lexical":  # n-grams are counted again: no cache (clinc150: 36 s, then 48 s)
            return m.train_seconds * grow * GROWTH_MARGIN
        if m.pipeline["strategy"] == "frozen-tagger":  # its features are in the run's store: the head trains again
            return (m.train_seconds - float((m.chosen or {}).get("feature_seconds", 0.0))) * grow * GROWTH_MARGIN
        share = float((m.chosen or {}).get("train_share", 1.0))
        return min(FROZEN_REFIT_S, m.train_seconds * grow * GROWTH_MARGIN) + m.train_seconds * (1 / share - 1)

    if keep_trained:
        return None if not trained or len(trained) == len(plan.members) else \
            sum(frozen(m) for m, _ in plan.members if m.pipeline["strategy"] not in TRAINED)
    return sum(m.train_seconds * grow * GROWTH_MARGIN if m.pipeline["strategy"] in TRAINED
               else frozen(m) for m, _ in plan.members)


def settled_pipeline(node: Node, *, new_budget: bool = False) -> Pipeline:
    """A node's pipeline with the hyperparameters its fit settled on (C; the epochs early stopping
    chose), to train again on other data without a dev split to stop on.

    ``new_budget``: the pipeline trains again under another budget (a later cycle). Epochs from a
    fit the deadline cut short measure the old budget, not the data, so the requested ones stay:
    carried over, each tight cycle would shrink the next one's plan (5.0 → 2.44 → 1.68 epochs)."""
    pipe = Pipeline.from_dict(node.pipeline)
    chosen = node.chosen or {}
    keep = {"C"} if pipe.strategy in ("frozen", "lexical") else {"epochs"}
    if new_budget and chosen.get("cut_by_deadline"):
        keep -= {"epochs"}
    hp = {**pipe.hparams, **{k: v for k, v in chosen.items() if k in keep}}
    return Pipeline(pipe.recipe, pipe.strategy, pipe.encoder, hp, pipe.seed)


def refit(plan: RefitPlan, spec: TaskSpec, ds: dict[str, list[Example]], ctx: FitContext,
          make_trainer: Callable[[str], Trainer],
          hparams_for: Callable[[Pipeline, int], dict[str, Any]] | None = None,
          keep: Callable[[Node], TrainedModel] | None = None) -> tuple[TrainedModel, NodeResult]:
    """Retrain every member of the plan on ``ds[recipe] + ds["dev"]``; ``hparams_for(pipeline, n)``,
    when given, overrides a trained member's hyperparameters for ``n`` examples (default: the
    settled ones). ``keep``: trained members (``TRAINED``) are not retrained but loaded as they are
    by ``keep(node)``; only the frozen ones are refitted.

    Raises:
        RuntimeError: a member's fit was cut short by the deadline.
    """
    from adaptloop.train.ensemble import combine

    t0 = time.monotonic()
    models, kept = [], []
    for member, _w in plan.members:
        if keep is not None and member.pipeline["strategy"] in TRAINED:
            models.append(keep(member))
            kept.append(member.name)
            continue
        pipe = settled_pipeline(member)
        data = ds[pipe.recipe] + ds["dev"]
        if hparams_for is not None and "epochs" in pipe.hparams:
            pipe = Pipeline(pipe.recipe, pipe.strategy, pipe.encoder,
                            {**pipe.hparams, **hparams_for(pipe, len(data))}, pipe.seed)
        model, result = make_trainer(pipe.strategy).fit(spec, pipe, data, [], ctx)
        ch = result.chosen
        if ch.get("steps_run", 0) < ch.get("planned_steps", 0) or "deadline" in result.notes:
            raise RuntimeError(f"refit of {member.name} cut short by the budget")
        models.append(model)
    weights = [w for _, w in plan.members]
    model = combine(models, weights)
    return model, NodeResult(dev_metrics={}, train_seconds=time.monotonic() - t0,
                             notes=f"refit of {plan.selected.name} on {len(ds['dev'])} more examples"
                                   + (f" ({', '.join(kept)} kept as trained)" if kept else ""),
                             chosen={"weights": weights} if len(models) > 1 else {})
