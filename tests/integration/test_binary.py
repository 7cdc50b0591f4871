"""Binary and rare-class classification, end to end on public data: no backend, no ensemble,
no threshold and no cold start may collapse to the majority class.

The binary task is banking77's ``card_arrival`` against messages of every other intent
(13% positive, as in a spam-vs-ham set); the rare-class task is three intents, one of them
with a tenth of the others' examples. (The logistic-regression head on its own:
tests/unit/train/test_logreg.py.)
"""

import random

import numpy as np
import pytest
from sqlalchemy import select

from adaptloop.agent.coldstart import cold_start
from adaptloop.data.sources import load_classification
from adaptloop.evaluate.metrics import classification_metrics
from adaptloop.store import registry
from adaptloop.store.db import Decision
from adaptloop.train import load_trained, trainer_for
from adaptloop.train.base import FitContext, predict_labels
from adaptloop.train.fake import FakeModel, FakeTrainer, _features
from adaptloop.types import Example, Pipeline, TaskSpec
from adaptloop.workspace import Workspace, init_workspace
from tests.conftest import write_jsonl

pytestmark = pytest.mark.integration

POSITIVE = "card_arrival"


def binary_rows(rows: list[dict], n_neg: int, seed: int = 0, n_pos: int | None = None) -> list[dict]:
    """``n_pos`` (default every) ``card_arrival`` rows and ``n_neg`` rows of the other intents, relabelled
    ``other``."""
    rng = random.Random(seed)
    pos = [{"text": r["text"], "label": POSITIVE} for r in rows if r["label"] == POSITIVE]
    neg = [{"text": r["text"], "label": "other"} for r in rows if r["label"] != POSITIVE]
    rng.shuffle(neg)
    if n_pos is not None:
        rng.shuffle(pos)
    out = pos[:n_pos] + neg[:n_neg]
    rng.shuffle(out)
    return out


def as_examples(rows: list[dict]) -> list[Example]:
    return [Example(r["text"], r["label"]) for r in rows]


# -- real encoders on a binary task from public data -----------------------------------------
@pytest.fixture(scope="module")
def binary(banking_train, banking_test):
    train = as_examples(binary_rows(banking_train, 560, n_pos=90))  # 14% positive
    test = as_examples(binary_rows(banking_test, 260, seed=1))
    rng = random.Random(2)
    rng.shuffle(train)
    spec = TaskSpec("card-arrival", "is it about a card that has not arrived", "classification",
                    ("card_arrival", "other"))
    return spec, train[:-120], train[-120:], test


def minority_f1(spec, examples, pred, label=POSITIVE):
    m = classification_metrics([e.label for e in examples], pred, labels=spec.labels)
    return m["accuracy"], m["per_class"][label]["f1"]


@pytest.mark.parametrize("strategy", ["frozen", "finetune"])
def test_binary_backends_beat_the_majority_and_find_the_minority(binary, tmp_path, strategy):
    spec, train, dev, test = binary
    majority = max(np.mean([e.label == lab for e in test]) for lab in spec.labels)
    hp = {"epochs": 1.0} if strategy == "finetune" else {}
    model, _ = trainer_for(strategy).fit(spec, Pipeline("raw", strategy, hparams=hp, seed=0), train, dev,
                                         FitContext())
    model.save(tmp_path / strategy)
    again = load_trained(tmp_path / strategy)
    texts = [e.text for e in test]
    np.testing.assert_allclose(model.predict_proba(texts), again.predict_proba(texts), atol=1e-5)
    acc, f1 = minority_f1(spec, test, predict_labels(again, texts))
    assert acc > majority + 0.05 and f1 > 0.7, (acc, majority, f1)
    # a threshold model and an ensemble on top keep the minority class
    thr, _ = trainer_for("threshold").fit(
        spec, Pipeline("raw", "threshold", hparams={"of": str(tmp_path / strategy), "labels": [POSITIVE]}),
        [], dev, FitContext())
    acc_t, f1_t = minority_f1(spec, test, predict_labels(thr, texts))
    assert acc_t > majority + 0.05 and f1_t > 0.7
    ens, _ = trainer_for("ensemble").fit(
        spec, Pipeline("raw", "ensemble", hparams={"members": [str(tmp_path / strategy)] * 2}), [], dev,
        FitContext())
    acc_e, f1_e = minority_f1(spec, test, predict_labels(ens, texts))
    assert acc_e > majority + 0.05 and f1_e > 0.7


def test_a_rare_class_is_learned_not_swallowed(banking_train, banking_test):
    keep = ("card_arrival", "card_linking", "exchange_rate")
    counts = {"card_arrival": 12, "card_linking": 120, "exchange_rate": 120}
    seen = dict.fromkeys(keep, 0)
    train = []
    for r in banking_train:
        if r["label"] in keep and seen[r["label"]] < counts[r["label"]]:
            seen[r["label"]] += 1
            train.append(Example(r["text"], r["label"]))
    test = [Example(r["text"], r["label"]) for r in banking_test if r["label"] in keep]
    spec = TaskSpec("three", "p", "classification", keep)
    model, _ = trainer_for("frozen").fit(spec, Pipeline("raw", "frozen", seed=0), train, train[:40], FitContext())
    m = classification_metrics([e.label for e in test], predict_labels(model, [e.text for e in test]),
                               labels=keep)
    assert m["per_class"]["card_arrival"]["recall"] > 0.5 and m["accuracy"] > 0.85, m


def test_a_binary_cold_start_promotes_a_model_that_finds_the_minority(tmp_path, banking_train, banking_test):
    from adaptloop.agent.predict import evaluate_file, predict_texts

    ws = Workspace.open(init_workspace(tmp_path / "ws"))
    ws.settings.search.workers = 1
    data = load_classification(write_jsonl(tmp_path / "train.jsonl", binary_rows(banking_train, 1000)))
    r = cold_start(ws, data, "is the message about a card that has not arrived", 40)
    assert r.winner["promoted"] and not r.winner["constant_baseline"]["no_better"]
    test = write_jsonl(tmp_path / "test.jsonl", binary_rows(banking_test, 110, seed=1))
    m = evaluate_file(ws, test)
    assert m["accuracy"] > 110 / 150 + 0.1 and m["per_class"][POSITIVE]["f1"] > 0.8, m
    out = predict_texts(ws, ["my new card still has not arrived, where is it?",
                             "what is the exchange rate for euros today?"])
    assert [p["label"] for p in out["predictions"]] == [POSITIVE, "other"]


# -- the cold start refuses a model no better than the majority class ------------------------
class ConstantTrainer(FakeTrainer):
    """Learns nothing: every input gets the training set's most frequent label."""

    def fit(self, spec, pipeline, train, dev, ctx):
        model, result = super().fit(spec, pipeline, train, dev, ctx)
        top = max(spec.labels, key=[e.label for e in train].count)
        centroids = np.zeros_like(model.centroids)
        centroids[spec.labels.index(top)] = 1.0 / np.sqrt(centroids.shape[1])
        return _Constant(spec.labels, centroids, spec.labels.index(top)), result


class _Constant(FakeModel):
    def __init__(self, labels, centroids, top):
        super().__init__(labels, centroids)
        self.top = top

    def predict_proba(self, texts):
        p = np.full((len(texts), len(self.labels)), 0.1 / max(1, len(self.labels) - 1))
        p[:, self.top] = 0.9
        return p


def test_a_cold_start_never_promotes_a_model_no_better_than_the_majority(tmp_path, banking_train):
    ws = Workspace.open(init_workspace(tmp_path / "ws"))
    ws.settings.search.workers = 1
    data = load_classification(write_jsonl(tmp_path / "train.jsonl", binary_rows(banking_train, 600)))
    trainer = ConstantTrainer()
    r = cold_start(ws, data, "card arrival or not", 30, make_trainer=lambda s: trainer,
                   embed_fn=lambda texts: _features(texts))
    assert r.version is not None and not r.winner["promoted"] and r.winner["constant_baseline"]["no_better"]
    assert "no better than predicting always 'other'" in r.stop_reason
    assert registry.alias_target(ws.store, "production") is None
    refusals = [d for d in ws.store.all(select(Decision)) if d.kind == "refuse"]
    assert refusals and "not promoted" in refusals[0].reason
