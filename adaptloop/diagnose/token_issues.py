"""Token-level label issues in extraction data, with cleanlab's token-classification tools.

Out-of-fold probabilities come from the cheapest model that sees context: the frozen base
encoder's hidden state of each word's first subword, fed to a logistic regression over
entity types (``O`` + one class per type), cross-fitted by sentence (grouped folds, so a
sentence is never scored by a model that saw it). ``cleanlab.token_classification`` then
flags the words whose given type the evidence contradicts: spurious annotations (given a
type, looks like ``O``), missed ones (the reverse) and inconsistent types.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from adaptloop.data.spans import cut_units
from adaptloop.train.base import Progress, no_progress
from adaptloop.types import Example


def word_features(texts: Sequence[str], units: Sequence[Sequence[tuple[int, int]]], encoder: str,
                  batch_size: int = 32) -> list[np.ndarray]:
    """Per text, one frozen-encoder vector per word unit (its first subword's last hidden state)."""
    import torch

    from adaptloop.train.encoder import load_base

    tok, model = load_base(encoder)
    out: list[np.ndarray] = []
    dim = model.config.hidden_size
    with torch.inference_mode():
        for b in range(0, len(texts), batch_size):
            chunk = list(texts[b:b + batch_size])
            enc = tok(chunk, truncation=True, max_length=256, padding=True, return_offsets_mapping=True,
                      return_tensors="pt")
            offsets = enc.pop("offset_mapping").tolist()
            hidden = model(**enc).last_hidden_state.numpy()
            for i, t_units in enumerate(units[b:b + batch_size]):
                feats = np.zeros((len(t_units), dim), dtype=np.float32)
                subs = [(j, s) for j, (s, e) in enumerate(offsets[i]) if e > s]
                for u, (us, ue) in enumerate(t_units):
                    j = next((j for j, s in subs if us <= s < ue), None)
                    if j is not None:  # words past the 256-subword cut keep a zero vector
                        feats[u] = hidden[i, j]
                out.append(feats)
    return out


def token_label_issues(train: Sequence[Example], types: Sequence[str], encoder: str, *, seed: int = 0,
                       folds: int = 3, max_share: float = 0.1, progress: Progress = no_progress,
                       ) -> tuple[list[dict[str, Any]], dict[int, int]]:
    """Flagged words as ``{"id", "label", "suggested", "word"}`` rows, and flags per example index.

    Only sentences that hold a flagged word *and* rank in the worst ``max_share`` by
    cleanlab's sentence label-quality score are returned: a frozen encoder's word-level
    probabilities are weak evidence, and dropping a sentence costs all its good labels.
    """
    from cleanlab.token_classification.filter import find_label_issues
    from cleanlab.token_classification.rank import get_label_quality_scores
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    names = ["O", *types]
    index = {t: i + 1 for i, t in enumerate(types)}
    units = [cut_units(e.text, e.spans) for e in train]
    labels = []
    for e, us in zip(train, units):
        lab = np.zeros(len(us), dtype=np.int64)
        for k, (s, _t) in enumerate(us):
            hit = next((sp for sp in e.spans if sp[0] <= s < sp[1]), None)
            lab[k] = index.get(hit[2], 0) if hit else 0
        labels.append(lab)
    bar = progress("label issues (tokens)", folds + 1)
    feats = word_features([e.text for e in train], units, encoder)
    bar(1)
    x = np.concatenate(feats)
    y = np.concatenate(labels)
    groups = np.concatenate([np.full(len(lab), i) for i, lab in enumerate(labels)])
    probs = np.zeros((len(y), len(names)), dtype=np.float64)
    for fit_idx, score_idx in GroupKFold(n_splits=folds).split(x, y, groups):
        clf = LogisticRegression(max_iter=200, C=1.0, random_state=seed)
        clf.fit(x[fit_idx], y[fit_idx])
        probs[np.ix_(score_idx, clf.classes_)] = clf.predict_proba(x[score_idx])
        bar(1)
    probs = np.clip(probs, 1e-6, None)
    probs /= probs.sum(1, keepdims=True)
    per_sentence, at = [], 0
    for lab in labels:
        per_sentence.append(probs[at:at + len(lab)])
        at += len(lab)
    keep = [i for i, lab in enumerate(labels) if len(lab)]
    given, evidence = [labels[i] for i in keep], [per_sentence[i] for i in keep]
    issues = find_label_issues(given, evidence, n_jobs=1)  # no forked Pool: see data.curate
    quality, _ = get_label_quality_scores(given, evidence)
    worst = set(np.argsort(quality, kind="stable")[: int(max_share * len(keep))].tolist())
    rows: list[dict[str, Any]] = []
    flagged: dict[int, int] = {}
    for k, j in issues:
        if k not in worst:
            continue
        i = keep[k]
        s, t = units[i][j]
        rows.append({"id": train[i].id, "label": names[labels[i][j]],
                     "suggested": names[int(per_sentence[i][j].argmax())], "word": train[i].text[s:t]})
        flagged[i] = flagged.get(i, 0) + 1
    return rows, flagged
