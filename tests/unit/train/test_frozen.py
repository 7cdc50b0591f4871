"""The frozen-encoder backend is anytime: train is embedded slice by slice, and past the trial's
checkpoint a fit still below the incumbent stops with a head on what it embedded."""

import time

import numpy as np

from adaptloop.train import FitContext
from adaptloop.train.encoder import EmbeddingCache
from adaptloop.train.frozen import SLICES, FrozenEncoderTrainer, stratified_order
from adaptloop.types import Example, Pipeline, TaskSpec

LABELS = ("a", "b", "c")
SPEC = TaskSpec(name="t", family="classification", labels=LABELS, primary_metric="accuracy", prompt="")


class Vectors(EmbeddingCache):
    """Embeds a text as its label's one-hot plus seeded noise (no network); counts the texts asked for."""

    def __init__(self, seconds: float = 0.0) -> None:
        super().__init__()
        self.asked: list[int] = []
        self.seconds = seconds

    def get(self, encoder, texts, *, progress=None, device=None):
        self.asked.append(len(texts))
        time.sleep(self.seconds)
        rng = np.random.default_rng(len(self.asked))
        x = np.stack([np.eye(len(LABELS))[LABELS.index(t.split()[0])] for t in texts]) if texts else np.zeros((0, 3))
        return (x + rng.normal(0, 0.3, x.shape)).astype(np.float32)


def data(n: int) -> list[Example]:
    return [Example(f"{LABELS[i % 3]} text {i}", LABELS[i % 3]) for i in range(n)]


def fit(seconds: float = 0.0, **ctx):
    cache, reported = Vectors(seconds), []
    model, result = FrozenEncoderTrainer().fit(
        SPEC, Pipeline("raw", "frozen", "enc", {}, 0), data(240), data(30),
        FitContext(embeddings=cache, report=reported.append, **ctx))
    return cache, reported, model, result


def test_a_frozen_fit_past_its_checkpoint_and_behind_the_incumbent_stops_on_the_slices_it_embedded():
    cache, reported, model, result = fit(checkpoint=time.monotonic() - 1, incumbent=lambda: 1.01)
    assert cache.asked == [30, 240 // SLICES]  # dev first, then one slice of train: checked, behind, stopped
    assert result.chosen["train_share"] == 1 / SLICES and result.chosen["trailing"]
    assert "trailing" in result.notes and result.dev_metrics["accuracy"] > 0.9  # a real head on what it saw
    # told the check's score, then the kept head's when it is higher: new bests only
    assert reported and reported == sorted(set(reported)) and reported[-1] == result.dev_metrics["accuracy"]
    assert model.predict_proba(["b x"]).shape == (1, 3)


def test_a_frozen_fit_ahead_of_the_incumbent_or_before_its_checkpoint_embeds_all_of_train():
    for ctx in ({"checkpoint": time.monotonic() - 1, "incumbent": lambda: 0.0}, {"incumbent": lambda: 1.01}):
        cache, reported, _, result = fit(**ctx)
        assert sum(cache.asked) == 270 and len(cache.asked) == 1 + SLICES
        assert "train_share" not in result.chosen and "trailing" not in result.notes


def test_the_check_comes_at_the_last_slice_before_the_checkpoint_not_the_first_after_it():
    # each embedding call takes 0.5 s: dev ends at 0.5 s, the first slice at 1.0 s, and the second would
    # end at 1.5 s, past the checkpoint at 1.25 s; so the first slice's end is checked
    cache, _, _, result = fit(seconds=0.5, checkpoint=time.monotonic() + 1.25, incumbent=lambda: 1.01)
    assert cache.asked == [30, 240 // SLICES] and result.chosen["trailing"]


def test_the_deadline_stops_a_frozen_fit_after_the_slice_it_is_on():
    cache, _, _, result = fit(deadline=time.monotonic() - 1)
    assert cache.asked == [30, 240 // SLICES] and "deadline reached" in result.notes
    assert result.chosen["train_share"] == 1 / SLICES and "trailing" not in result.chosen


def test_every_prefix_of_the_stratified_order_holds_each_class_in_proportion():
    y = np.array([0] * 80 + [1] * 40 + [2] * 8)
    order = stratified_order(y, seed=3)
    assert sorted(order.tolist()) == list(range(len(y)))
    for k in (16, 32, 64):
        counts = np.bincount(y[order[:k]], minlength=3) / k
        assert np.allclose(counts, [80 / 128, 40 / 128, 8 / 128], atol=1.5 / k * 3)
