"""How fast a model scores texts on this machine: what serving will see, measured, not assumed.

Pure timing over a model's own ``predict_proba`` (a classifier) or ``predict_spans`` (a tagger);
nothing here loads or trains a model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

SPEED_TEXTS = 256  # texts a model scores once to measure its texts a second
BATCH = 32  # as serving's micro-batches run them


def texts_per_second(model: Any, texts: Sequence[str], *, limit: int = SPEED_TEXTS) -> float:
    """Texts a second ``model`` scores on this machine, in batches of ``BATCH`` after one warm-up
    batch of 8; 0.0 without texts or a way to score them."""
    texts = list(texts)[:limit]
    score = getattr(model, "predict_proba", None) or getattr(model, "predict_spans", None)
    if not texts or score is None:
        return 0.0
    score(texts[:8])
    t0 = time.monotonic()
    for start in range(0, len(texts), BATCH):
        score(texts[start:start + BATCH])
    return len(texts) / max(1e-9, time.monotonic() - t0)
