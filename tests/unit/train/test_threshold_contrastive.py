"""Decision thresholds (bias + abstention tuned on dev) and the contrastive fine-tune pieces."""

import numpy as np
import pytest
import torch

from adaptloop.train import load_trained
from adaptloop.train.base import FitContext, class_weights
from adaptloop.train.fake import FakeModel
from adaptloop.train.finetune import FineTuneConfig, _with_hard_negatives, supervised_contrastive
from adaptloop.train.threshold import ThresholdTrainer, adjust, tune
from adaptloop.types import Example, Pipeline, TaskSpec


def test_tune_learns_abstention_and_a_negative_bias_for_an_over_predicted_class():
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 3, n)  # class 2 is the out-of-scope label
    probs = np.full((n, 3), 0.05)
    probs[np.arange(n), y] = 0.9
    oos = y == 2
    probs[oos] = [0.55, 0.4, 0.05]  # out-of-scope rows look like a weak class 0
    probs /= probs.sum(1, keepdims=True)
    base = float((probs.argmax(1) == y).mean())
    offsets, t = tune(probs, y, targets=[0], abstain=2)
    tuned = float((adjust(probs, offsets, 2, t).argmax(1) == y).mean())
    assert base < 0.75 and tuned > 0.95 and t > 0.5


def test_threshold_trainer_cross_fits_and_reloads(tmp_path):
    spec = TaskSpec("t", "p", "classification", ("pay", "card", "oos"), out_of_scope_label="oos")
    cents = np.zeros((3, 256), dtype=np.float32)
    model = FakeModel(spec.labels, cents)  # uniform: the base is as unsure as can be
    model.save(tmp_path / "base")
    dev = [Example(f"pay my bill number {i}", "oos") for i in range(30)]
    pipe = Pipeline("raw", "threshold", hparams={"of": str(tmp_path / "base"), "labels": ["pay"],
                                                 "abstain": "oos"})
    tm, result = ThresholdTrainer().fit(spec, pipe, [], dev, FitContext())
    assert result.dev_metrics["accuracy"] == 1.0 and result.chosen["threshold"] > 0
    tm.save(tmp_path / "t")
    again = load_trained(tmp_path / "t")
    assert [again.labels[i] for i in again.predict_proba(["anything"]).argmax(1)] == ["oos"]
    with pytest.raises(ValueError, match="at least 20"):
        ThresholdTrainer().fit(spec, pipe, [], dev[:5], FitContext())


def test_supervised_contrastive_prefers_separated_classes():
    y = torch.tensor([0, 0, 1, 1])
    apart = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]), dim=1)
    mixed = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]]), dim=1)
    assert supervised_contrastive(apart, y, 0.1) < supervised_contrastive(mixed, y, 0.1)
    assert float(supervised_contrastive(apart, torch.tensor([0, 1, 2, 3]), 0.1)) == 0.0  # no positives


def test_hard_negative_batches_hold_both_sides_of_a_pair():
    rng = np.random.default_rng(0)
    batches = [list(range(i, i + 8)) for i in range(0, 80, 8)]
    pools = [(np.arange(100, 110), np.arange(200, 210))]
    out = _with_hard_negatives(batches, pools, 0.25, rng)
    assert all(len(b) == 8 and any(100 <= i < 110 for i in b) and any(200 <= i < 210 for i in b) for b in out)
    assert _with_hard_negatives(batches, [], 0.25, rng) == batches
    cfg = FineTuneConfig.from_hparams({"pairs": [["a", "b"]], "contrastive": 0.5})
    assert cfg.pairs == (("a", "b"),)


def test_class_weights_by_label():
    assert class_weights({"b": 2.0}, ["a", "b"]) == {0: 1.0, 1: 2.0}
    assert class_weights("balanced", ["a"]) == "balanced" and class_weights(None, ["a"]) is None
    with pytest.raises(ValueError, match="class_weight"):
        class_weights(3, ["a"])


def test_lora_targets_follow_the_architecture():
    from adaptloop.train.finetune import lora_targets

    class Attn(torch.nn.Module):
        def __init__(self, names):
            super().__init__()
            for n in names:
                self.add_module(n, torch.nn.Linear(2, 2))

    assert lora_targets(Attn(["query", "key", "value"])) == ["query", "value"]
    assert lora_targets(Attn(["q", "k", "v", "o"])) == ["q", "v"]  # MPNet
    with pytest.raises(ValueError, match="LoRA"):
        lora_targets(Attn(["dense"]))


@pytest.mark.parametrize("share", [0.0, 0.01, 0.05, 0.2])
def test_the_abstention_threshold_is_the_highest_that_keeps_the_in_scope_share(share):
    from adaptloop.train.threshold import abstention, scope_threshold

    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 500)  # class 3 is out of scope
    probs = rng.dirichlet(np.ones(4) * 0.5, 500)
    t = scope_threshold(probs, y, 3, share)
    top = probs[y != 3].max(1)
    assert (top < t).mean() <= share  # at most that share of in-scope rows abstains
    higher = np.sort(top)[np.searchsorted(np.sort(top), t, side="right")]  # the next notch up
    assert (top <= higher).mean() > share  # and past the next in-scope row it would take more
    st = abstention(probs, y, 3, share)
    answered = (probs[y != 3].max(1) < t) | (probs[y != 3].argmax(1) == 3)  # below it, or out of scope anyway
    assert st["threshold"] == pytest.approx(t) and st["sent"] == int(answered.sum())
    assert st["in_scope"] == int((y != 3).sum())
    assert st["caught"] >= st["caught_before"] if share else st["caught"] == st["caught_before"]


def test_nothing_in_scope_means_every_row_abstains():
    from adaptloop.train.threshold import scope_threshold

    assert scope_threshold(np.full((5, 3), 1 / 3), np.full(5, 2), 2, 0.01) == 1.0
