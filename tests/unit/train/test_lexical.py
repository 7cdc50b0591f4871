"""The word and character n-gram model, and how an ensemble weighs its members."""

import numpy as np

from adaptloop.train import FitContext, load_trained, trainer_for
from adaptloop.train.ensemble import pick_weights
from adaptloop.types import Example, Pipeline, TaskSpec

SPEC = TaskSpec(name="t", prompt="route", family="classification", labels=("card", "refund", "unused"),
                primary_metric="accuracy")
TRAIN = [Example(text=t, label="card") for t in ("my card is blocked", "card declined at the shop",
                                                  "new card please", "lost my card")] + \
        [Example(text=t, label="refund") for t in ("refund my order", "I want my money back",
                                                    "refund not received", "where is my refund")]


def test_it_learns_surface_forms_and_reloads_from_plain_data(tmp_path):
    model, result = trainer_for("lexical").fit(SPEC, Pipeline("raw", "lexical", "enc"), TRAIN,
                                               [Example(text="my refund please", label="refund")], FitContext())
    assert result.dev_metrics["accuracy"] == 1.0 and result.chosen == {"C": 10.0}
    p = model.predict_proba(["cardd blocked", "refnd please"])  # misspelt: character n-grams still match
    assert p.shape == (2, 3) and list(p.argmax(1)) == [0, 1] and np.allclose(p.sum(1), 1)
    assert p[:, 2].max() < 1e-3  # a class never seen in training is never predicted
    model.save(tmp_path)
    assert not list(tmp_path.glob("*.pkl")) and not list(tmp_path.glob("*.joblib"))
    again = load_trained(tmp_path)
    texts = ["lost card", "money back"]
    assert np.allclose(again.predict_proba(texts), model.predict_proba(texts))
    assert again.predict_proba([]).shape == (0, 3)


def test_ensemble_weights_stay_near_equal_unless_dev_says_otherwise_beyond_noise():
    y = np.array([0, 1] * 200)
    right = np.eye(2)[y] * 0.6 + 0.2  # always right
    noisy = right.copy()
    noisy[:3] = noisy[:3, ::-1]  # wrong on 3 of 400 rows: within 0.5% of the best
    w, acc = pick_weights([right, noisy], y)
    assert w == (0.5, 0.5) and acc >= 0.995
    bad = right.copy()
    bad[:60] = bad[:60, ::-1]  # wrong on 15%: the weights lean on the good member
    w, acc = pick_weights([right, bad], y)
    assert w[0] > w[1] and acc == 1.0
