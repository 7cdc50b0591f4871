"""Refit on train + dev: what it costs and which members it retrains."""

import numpy as np

from adaptloop.agent.refit import FROZEN_REFIT_S, GROWTH_MARGIN, RefitPlan, plan_of, refit, refit_cost
from adaptloop.store.db import Node
from adaptloop.train import FitContext
from adaptloop.types import Example, NodeResult, TaskSpec

SPEC = TaskSpec(name="t", family="classification", labels=("a", "b"), primary_metric="accuracy", prompt="")


def member(name: str, strategy: str, seconds: float) -> Node:
    return Node(name=name, pipeline={"recipe": "raw", "strategy": strategy, "encoder": "enc", "hparams": {},
                                     "seed": 0}, train_seconds=seconds, chosen={}, model_artifact=f"art-{name}")


class Fitted:
    labels = ["a", "b"]

    def __init__(self, name: str, n: int) -> None:
        self.name, self.n = name, n

    def predict_proba(self, texts):
        return np.full((len(texts), 2), 0.5)


class Trainer:
    def __init__(self, fits: list) -> None:
        self.fits = fits

    def fit(self, spec, pipe, data, dev, ctx):
        self.fits.append((pipe.strategy, len(data)))
        return Fitted(pipe.strategy, len(data)), NodeResult(dev_metrics={}, train_seconds=1.0, chosen={})


def test_a_refit_of_the_frozen_members_alone_keeps_the_trained_ones_and_costs_seconds():
    ft, lr = member("finetune", "finetune", 300.0), member("big", "frozen", 330.0)
    plan = RefitPlan(member("ensemble", "ensemble", 10.0), [(ft, 0.5), (lr, 0.5)])
    assert refit_cost(plan, 800, 100) > 300.0
    assert refit_cost(plan, 800, 100, keep_trained=True) == FROZEN_REFIT_S
    assert refit_cost(RefitPlan(lr, [(lr, 1.0)]), 800, 100, keep_trained=True) is None  # nothing to keep
    assert refit_cost(RefitPlan(ft, [(ft, 1.0)]), 800, 100, keep_trained=True) is None  # nothing to refit
    # a frozen fit cut for trailing embedded a share of train: its refit embeds the rest first
    cut = Node(**{**{c: getattr(lr, c) for c in ("name", "pipeline", "train_seconds", "model_artifact")},
                  "chosen": {"C": 10.0, "train_share": 0.5}})
    cut_plan = RefitPlan(plan.selected, [(ft, 0.5), (cut, 0.5)])
    assert refit_cost(cut_plan, 800, 100, keep_trained=True) == FROZEN_REFIT_S + 330.0
    # a frozen-tagger reads its features from the run's store: its refit trains the head again, scaled to
    # the data; one fitted before the store (no feature seconds recorded) costs all of its fit again
    ftag = Node(**{**{c: getattr(member("frozen-tagger", "frozen-tagger", 250.0), c)
                      for c in ("name", "pipeline", "train_seconds", "model_artifact")},
                   "chosen": {"feature_seconds": 200.0}})
    assert refit_cost(RefitPlan(ftag, [(ftag, 1.0)]), 800, 100) == 50.0 * 900 / 800 * GROWTH_MARGIN
    assert refit_cost(RefitPlan(plan.selected, [(ft, 0.5), (ftag, 0.5)]), 800, 100, keep_trained=True) == \
        50.0 * 900 / 800 * GROWTH_MARGIN
    old = member("frozen-tagger", "frozen-tagger", 250.0)
    assert refit_cost(RefitPlan(old, [(old, 1.0)]), 800, 100) > 250.0
    # an n-gram member has no cache to read: it costs its fit again, scaled to the data (no seconds' cap)
    ngram = member("lexical", "lexical", 36.0)
    assert refit_cost(RefitPlan(plan.selected, [(ft, 0.5), (ngram, 0.5)]), 800, 100, keep_trained=True) == \
        36.0 * 900 / 800 * GROWTH_MARGIN > FROZEN_REFIT_S

    fits: list = []
    ds = {"raw": [Example(f"t{i}", "a") for i in range(8)], "dev": [Example("d", "b")]}
    model, result = refit(plan, SPEC, ds, FitContext(), lambda strategy: Trainer(fits),
                          keep=lambda node: Fitted(f"kept {node.name}", 0))
    assert fits == [("frozen", 9)]  # the frozen member saw train + dev; the fine-tune was not retrained
    assert [m.name for m in model.members] == ["kept finetune", "frozen"]
    assert "finetune kept as trained" in result.notes


def test_the_plan_of_a_node_is_itself_or_the_members_its_weights_keep():
    ft, lr = member("finetune", "finetune", 300.0), member("big", "frozen", 30.0)
    ngram = member("lexical", "lexical", 5.0)
    ens = Node(name="ensemble", pipeline={"recipe": "raw", "strategy": "ensemble", "encoder": "enc",
                                          "hparams": {"member_names": ["finetune", "big", "lexical"]}, "seed": 0},
               chosen={"weights": [0.5, 0.0, 0.5]})
    assert plan_of(ens, [ft, lr, ngram, ens]).members == [(ft, 0.5), (ngram, 0.5)]  # a zero weight is no member
    assert plan_of(lr, [ft, lr]).members == [(lr, 1.0)]
