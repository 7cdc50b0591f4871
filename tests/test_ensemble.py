import numpy as np

from adaptloop.train import load_trained
from adaptloop.train.base import FitContext
from adaptloop.train.ensemble import EnsembleTrainer, simplex_grid
from adaptloop.train.fake import FakeModel, FakeTrainer
from adaptloop.types import Example, Pipeline, TaskSpec


def test_simplex_grid_sums_to_one():
    g = simplex_grid(3, 0.5)
    assert sorted(g) == sorted([(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0),
                                (0.5, 0.5, 0.0), (0.5, 0.0, 0.5), (0.0, 0.5, 0.5)])


def test_ensemble_is_no_worse_than_its_best_member_on_dev(tmp_path):
    spec = TaskSpec("t", "p", "classification", ("pay", "card"))
    train = [Example("pay bill now", "pay"), Example("card lost", "card"),
             Example("pay rent", "pay"), Example("card stolen", "card")]
    dev = [Example("pay the bill", "pay"), Example("my card", "card"), Example("lost it", "card")]
    good, _ = FakeTrainer().fit(spec, Pipeline("raw", "frozen"), train, dev, FitContext())
    bad = FakeModel(spec.labels, np.zeros_like(good.centroids))  # uniform: always wrong-ish
    good.save(tmp_path / "a")
    bad.save(tmp_path / "b")
    pipe = Pipeline("raw", "ensemble", hparams={"members": [str(tmp_path / "a"), str(tmp_path / "b")]})
    model, result = EnsembleTrainer().fit(spec, pipe, train, dev, FitContext())
    good_acc = np.mean(good.predict_proba([e.text for e in dev]).argmax(1) == [0, 1, 1])
    assert result.dev_metrics["accuracy"] >= good_acc
    model.save(tmp_path / "ens")
    again = load_trained(tmp_path / "ens")
    texts = [e.text for e in dev]
    np.testing.assert_allclose(model.predict_proba(texts), again.predict_proba(texts))
