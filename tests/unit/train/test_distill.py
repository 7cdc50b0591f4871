"""The student's pieces that train nothing: cutting an encoder, the teacher's softened targets."""

import numpy as np
import pytest

from adaptloop.train.distill import DistillConfig, cut_layers, soft_targets


def test_cut_layers_keeps_the_first_layers_and_says_so_in_the_config(tmp_path):
    from transformers import AutoModel

    from adaptloop.train.encoder import load_base

    tok, base = load_base("sentence-transformers/all-MiniLM-L6-v2")
    small = cut_layers(base, 2)
    assert len(small.encoder.layer) == 2 and small.config.num_hidden_layers == 2
    assert len(base.encoder.layer) == 6  # the shared base is left whole
    small.save_pretrained(tmp_path)
    again = AutoModel.from_pretrained(tmp_path)
    assert len(again.encoder.layer) == 2
    batch = tok(["a card that never arrived"], return_tensors="pt")
    a, b = small(**batch).last_hidden_state, again(**batch).last_hidden_state
    assert np.allclose(a.detach().numpy(), b.detach().numpy(), atol=1e-5)
    assert len(cut_layers(base, 99).encoder.layer) == 6
    with pytest.raises(ValueError, match="no encoder.layer"):
        cut_layers(base.embeddings, 2)


def test_soft_targets_soften_with_temperature_and_keep_the_order():
    p = np.array([[0.7, 0.2, 0.1], [0.0, 1.0, 0.0]])
    t1, t2 = soft_targets(p, 1.0), soft_targets(p, 2.0)
    assert np.allclose(t1.sum(1), 1) and np.allclose(t2.sum(1), 1)
    assert np.allclose(t1[0], p[0], atol=1e-6)
    assert t2[0, 0] < t1[0, 0] and t2[0].argmax() == 0 and t2[1].argmax() == 1


def test_config_refuses_what_cannot_train():
    with pytest.raises(ValueError, match="at least 1"):
        DistillConfig(layers=0)
    with pytest.raises(ValueError, match="gold_weight"):
        DistillConfig(gold_weight=1.5)


def _minilm_classifier(labels, seed=0):
    """A fine-tuned-shaped classifier: MiniLM's encoder (a copy) under a random head over ``labels``."""
    import copy

    from adaptloop.train.classifier import EncoderClassifier
    from adaptloop.train.encoder import load_base

    tok, base = load_base("sentence-transformers/all-MiniLM-L6-v2")
    rng = np.random.default_rng(seed)
    return EncoderClassifier(labels, "sentence-transformers/all-MiniLM-L6-v2",
                             rng.normal(size=(len(labels), 384)).astype(np.float32),
                             rng.normal(size=len(labels)).astype(np.float32), copy.deepcopy(base), tok)


def test_a_student_started_from_a_member_is_that_member_at_first_and_leaves_it_unchanged():
    import time

    import torch

    from adaptloop.train.base import FitContext
    from adaptloop.train.distill import distill

    labels = ["card", "refund", "transfer"]
    start = _minilm_classifier(["transfer", "card", "refund"])  # its head rows in another order
    before = {k: v.clone() for k, v in start.encoder.state_dict().items()}
    texts = ["my card is lost", "I want my money back", "send money to a friend", "card stuck in the atm"]
    dev = ["where is my new card", "refund please", "wire to my mum"]
    want = start.predict_proba(dev)[:, [1, 2, 0]]  # the member's answers in ``labels`` order
    teacher = np.full((len(texts), 3), 1 / 3, dtype=np.float32)
    student, info = distill(labels, "unused", texts, teacher, [0, 1, 2, 0], dev, np.eye(3, dtype=np.float32),
                            FitContext(deadline=time.monotonic() + 60), DistillConfig(layers=6, epochs=1.0),
                            dev_gold=[0, 1, 2], start=start)
    assert info["started_from"] == "member" and info["layers"] == 6 and len(student.encoder.encoder.layer) == 6
    assert info["dev_score_before"] == round(float((want.argmax(1) == [0, 1, 2]).mean()), 4)
    assert student.labels == tuple(labels)
    assert all(torch.equal(before[k], v) for k, v in start.encoder.state_dict().items())


def test_a_student_does_not_start_from_what_it_cannot_be():
    import time

    from adaptloop.train.base import FitContext
    from adaptloop.train.distill import distill

    start = _minilm_classifier(["a", "b"])
    args = (["a", "b"], "unused", ["x", "y"], np.eye(2, dtype=np.float32), [0, 1], [], np.zeros((0, 2)),
            FitContext(deadline=time.monotonic() + 5))
    with pytest.raises(ValueError, match="at most 3 layers"):
        distill(*args, DistillConfig(layers=3), start=start)  # six layers do not fit a 3-layer student
    with pytest.raises(ValueError, match="over its labels"):
        distill(["a", "c"], *args[1:], DistillConfig(layers=6), start=start)
