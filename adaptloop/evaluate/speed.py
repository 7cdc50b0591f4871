"""How fast a model scores texts on this machine: what serving will see, measured, not assumed.

Pure timing over a model's own ``predict_proba`` (a classifier) or ``predict_spans`` (a tagger);
nothing here loads or trains a model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

SPEED_TEXTS = 256  # texts a model scores in each timed pass to measure its texts a second
BATCH = 32  # as serving's micro-batches run them
REPEATS = 3  # timed passes at most; the fastest counts
REPEAT_S = 5.0  # no pass starts after this many seconds of timed passes (a slow model is timed once)


def texts_per_second(model: Any, texts: Sequence[str], *, limit: int = SPEED_TEXTS) -> float:
    """Texts a second ``model`` scores on this machine, in batches of ``BATCH`` after one warm-up
    batch of 8: the fastest of up to ``REPEATS`` passes over ``texts`` (as `timeit` reports the best
    of its repeats: other processes only ever slow a pass down). Single passes of the 6-layer MiniLM
    models of one banking77 cold start measured 145–231 texts/s on the same 2 cores, and six passes
    in a row of one of them 160–176: a limit such as ``[serve] min_throughput`` 150 sits inside that
    spread. 0.0 without texts or a way to score them."""
    texts = list(texts)[:limit]
    score = getattr(model, "predict_proba", None) or getattr(model, "predict_spans", None)
    if not texts or score is None:
        return 0.0
    score(texts[:8])
    passes: list[float] = []
    while len(passes) < REPEATS and sum(passes) < REPEAT_S:
        t0 = time.monotonic()
        for start in range(0, len(texts), BATCH):
            score(texts[start:start + BATCH])
        passes.append(time.monotonic() - t0)
    return len(texts) / max(1e-9, min(passes))
