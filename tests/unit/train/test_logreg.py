"""The logistic-regression head on a binary task: scikit-learn's probabilities, not a collapse to
the majority class."""

import numpy as np

from adaptloop.train.logreg import fit_logreg, full_head


def test_a_binary_logreg_head_gives_sklearn_s_probabilities():
    """scikit-learn keeps one row for two classes; the head must not copy it into both rows
    (that gave every input 0.5 / 0.5 and always the first label)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8))
    y = (x[:, 0] + 0.3 * x[:, 1] > 1.0).astype(int)  # 15% positive
    clf = fit_logreg(x, y, c=10.0, seed=0)
    w, b = full_head(clf, 2)
    logits = x @ w.T + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(p, clf.predict_proba(x), atol=1e-6)
    assert (p.argmax(1) == y).mean() > 0.95 > y.mean() + 0.5
    # two classes seen out of three: the unseen one is never predicted, the two stay apart
    y3 = np.where(y == 1, 2, 0)
    w3, b3 = full_head(fit_logreg(x, y3, c=10.0, seed=0), 3)
    pred = (x @ w3.T + b3).argmax(1)
    assert set(pred) == {0, 2} and (pred == y3).mean() > 0.95
