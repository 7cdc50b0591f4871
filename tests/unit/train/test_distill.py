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
