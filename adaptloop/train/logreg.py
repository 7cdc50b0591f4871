"""Logistic regression on fixed features, and its out-of-fold probabilities (no torch here).

Shared by the frozen-encoder backend, label-issue detection at preparation time and the
triage of production feedback, which must not pay for importing torch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold


def fit_logreg(x: np.ndarray, y: np.ndarray, *, c: float, seed: int,
               class_weight: str | dict[int, float] | None = None, max_iter: int = 1000) -> LogisticRegression:
    """Multinomial logistic regression; y must hold class ids 0..k-1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # a seed set of a few examples per class is small on purpose: not a regression problem
        warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
        return LogisticRegression(C=c, max_iter=max_iter, random_state=seed,
                                  class_weight=class_weight).fit(x, y)


def out_of_fold_proba(x: np.ndarray, y: np.ndarray, k: int, *, folds: int = 5, seed: int = 0,
                      progress: Callable[[int], None] | None = None, max_iter: int = 1000) -> np.ndarray:
    """Out-of-fold class probabilities, shape (n, k), from logistic regression on ``x``.

    Each row is predicted by a model that never saw it, as cleanlab requires.
    """
    counts = np.bincount(y, minlength=k)
    n_splits = int(max(2, min(folds, counts[counts > 0].min())))
    probs = np.full((len(y), k), 1e-6, dtype=np.float64)
    skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for tr, te in skf.split(x, y):
        clf = fit_logreg(x[tr], y[tr], c=10.0, seed=seed, max_iter=max_iter)
        probs[np.ix_(te, clf.classes_)] = clf.predict_proba(x[te])
        if progress:
            progress(1)
    return probs / probs.sum(1, keepdims=True)


def full_head(clf: LogisticRegression, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Head (k, d) and bias (k,) with rows for every class id, also those absent in training.

    With two classes seen, scikit-learn keeps one row: the logit of ``classes_[1]`` against
    ``classes_[0]``. It becomes two rows of opposite halves, so their softmax is its sigmoid
    (copying the one row into both would give every input 0.5 / 0.5 and the first label).
    """
    d = clf.coef_.shape[1]
    weight = np.zeros((k, d), dtype=np.float32)
    bias = np.full(k, -1e4, dtype=np.float32)  # a class never seen is never predicted
    if len(clf.classes_) == 2 and clf.coef_.shape[0] == 1:
        coef, intercept = clf.coef_ / 2, clf.intercept_ / 2
        coef, intercept = np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
    else:
        coef, intercept = clf.coef_, clf.intercept_
    weight[clf.classes_] = coef
    bias[clf.classes_] = intercept
    return weight, bias


def linear_proba(x: Any, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Softmax of the linear head (``weight`` (k, d), ``bias`` (k,)) over features ``x`` (dense or sparse)."""
    logits = np.asarray(x @ weight.T) + bias
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)
