import time

import numpy as np

from adaptloop.agent import distill


class SlowTeacher:
    """A teacher that labels at a known pace: 1 ms a text."""

    def __init__(self) -> None:
        self.seen = 0

    def predict_proba(self, texts):
        time.sleep(0.001 * len(texts))
        self.seen += len(texts)
        return np.full((len(texts), 2), 0.5)


def test_probe_labels_stop_at_their_time_share_and_match_the_texts_they_cover(monkeypatch):
    monkeypatch.setattr(distill, "PROBE_CHUNK", 10)
    teacher = SlowTeacher()
    texts = [f"probe {i}" for i in range(1000)]
    got, proba = distill._label_probes(teacher, texts, seconds=0.1)
    assert 10 <= len(got) < 1000 and got == texts[:len(got)]
    assert proba.shape == (len(got), 2) and teacher.seen == len(got)
    everything, proba = distill._label_probes(SlowTeacher(), texts[:25], seconds=60)
    assert everything == texts[:25] and proba.shape == (25, 2)
    assert distill._label_probes(SlowTeacher(), texts, seconds=0) == ([], None)
