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


def test_frozen_classifiers_in_a_saved_ensemble_embed_through_a_shared_cache(tmp_path):
    """Evaluation loads models with the workspace's embedding cache: a frozen classifier (also as an
    ensemble member or a thresholded base) then never loads its encoder for texts already embedded."""
    from adaptloop.train.classifier import EncoderClassifier
    from adaptloop.train.encoder import EmbeddingCache
    from adaptloop.train.ensemble import EnsembleModel
    from adaptloop.train.threshold import ThresholdModel

    enc = "no-such/encoder"  # loading it would raise: every vector must come from the cache
    cache = EmbeddingCache()
    texts = ["left", "right"]
    for t, v in zip(texts, np.eye(2, dtype=np.float32)):
        cache._rows[(enc, cache._key(t))] = v
    head = EncoderClassifier(["a", "b"], enc, np.eye(2) * 5, np.zeros(2))
    model = EnsembleModel([head, ThresholdModel(EncoderClassifier(["a", "b"], enc, np.eye(2) * 5, np.zeros(2)),
                                                np.zeros(2))], [0.5, 0.5])
    model.save(tmp_path / "m")
    probs = load_trained(tmp_path / "m", embeddings=cache).predict_proba(texts)
    assert probs.argmax(axis=1).tolist() == [0, 1]
