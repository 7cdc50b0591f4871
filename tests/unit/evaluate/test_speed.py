"""Speed on this machine: the fastest of a few timed passes, one pass for a slow model."""

import time

import numpy as np

from adaptloop.evaluate import speed


class Sleepy:
    """Scores a batch in ``delays[pass]`` seconds: the first timed pass is slowed down, as by another process."""

    def __init__(self, delays: list[float]) -> None:
        self.delays, self.calls = delays, []

    def predict_proba(self, texts):
        self.calls.append(len(texts))
        if len(self.calls) > 1:  # the first call is the warm-up
            time.sleep(self.delays[min(len(self.delays) - 1, (len(self.calls) - 2) // 2)])
        return np.zeros((len(texts), 2))


def test_the_fastest_pass_counts_and_a_slow_model_is_timed_once(monkeypatch):
    texts = [f"text {i}" for i in range(64)]  # two batches of 32 a pass
    m = Sleepy([0.2, 0.01, 0.01])
    rate = speed.texts_per_second(m, texts)
    assert m.calls == [8] + [32, 32] * speed.REPEATS
    assert rate > 64 / 0.2 * 3  # the disturbed first pass (0.4 s) does not count: two batches of 0.01 s do
    monkeypatch.setattr(speed, "REPEAT_S", 0.1)
    slow = Sleepy([0.2])
    assert speed.texts_per_second(slow, texts) < 64 / 0.4 * 1.01 and slow.calls == [8, 32, 32]
    assert speed.texts_per_second(object(), texts) == 0.0 and speed.texts_per_second(m, []) == 0.0
