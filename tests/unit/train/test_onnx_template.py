"""ONNX templates: torch exports an architecture once; a model of that architecture with other weights is
written from the template and computes what torch does; a template that misleads is caught and dropped."""

from __future__ import annotations

import json
import os

import numpy as np
import onnxruntime as ort
import pytest
import torch
from transformers import BertConfig, BertForTokenClassification

from adaptloop.train import onnx_export, onnx_template

IDS = torch.tensor([[1, 7, 9, 12, 2], [1, 5, 2, 0, 0]])
MASK = (IDS != 0).long()


class _Tok:
    """A tokenizer stand-in for ``_write``: the trace sample is fixed, ``save_pretrained`` writes nothing."""

    def __call__(self, texts, **_):
        return {"input_ids": IDS, "attention_mask": MASK}

    def save_pretrained(self, dest):
        pass


def _tagger(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=3)
    model = BertForTokenClassification(config).eval()
    with torch.no_grad():  # as trained weights are: no two tensors alike (fresh layer norms are all ones)
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return onnx_export._Logits(model)


def _onnx_logits(folder) -> np.ndarray:
    s = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    return s.run(None, {"input_ids": IDS.numpy(), "attention_mask": MASK.numpy()})[0]


def _torch_logits(module) -> np.ndarray:
    with torch.no_grad():
        return module(IDS, MASK).numpy()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTLOOP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx-templates"


def test_a_model_of_a_kept_architecture_is_filled_not_traced_and_a_misleading_template_is_dropped(
        tmp_path, cache, monkeypatch):
    first, second, third = _tagger(0), _tagger(1), _tagger(2)
    onnx_export._write(first, _Tok(), tmp_path / "a", "logits")
    kept = list(cache.iterdir())
    assert len(kept) == 1 and (kept[0] / "weights.json").is_file()
    weights = json.loads((kept[0] / "weights.json").read_text())
    assert any(transposed for _, transposed in weights.values())  # linear layers: folded transposes matched

    def never(*_a, **_k):
        raise AssertionError("torch traced again although a template of this architecture is kept")

    with monkeypatch.context() as m:
        m.setattr(torch.onnx, "export", never)
        onnx_export._write(second, _Tok(), tmp_path / "b", "logits")
    np.testing.assert_allclose(_onnx_logits(tmp_path / "b"), _torch_logits(second), atol=1e-5)
    assert not np.allclose(_onnx_logits(tmp_path / "a"), _onnx_logits(tmp_path / "b"), atol=1e-3)
    onnx_export.quantized(tmp_path / "b", "int8")  # the int8 graph is made when asked for, once
    assert (tmp_path / "b" / "model.int8.onnx").is_file() and not (tmp_path / "b" / "model.int8-mixed.onnx").exists()

    square = sorted(k for k, (name, _t) in weights.items() if "query.weight" in name or "key.weight" in name)
    wrong = {**weights, square[0]: weights[square[1]], square[1]: weights[square[0]]}  # names the wrong weights
    (kept[0] / "weights.json").write_text(json.dumps(wrong))
    onnx_export._write(third, _Tok(), tmp_path / "c", "logits")  # caught by the check: torch exports
    np.testing.assert_allclose(_onnx_logits(tmp_path / "c"), _torch_logits(third), atol=1e-5)
    assert json.loads((next(cache.iterdir()) / "weights.json").read_text()) == weights  # kept again, right


def test_other_shapes_or_config_are_another_architecture():
    small = _tagger(0)
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=5)
    five_tags = onnx_export._Logits(BertForTokenClassification(config))
    gelu = BertConfig(**{**config.to_dict(), "num_labels": 3, "hidden_act": "relu"})
    other_act = onnx_export._Logits(BertForTokenClassification(gelu))
    keys = {onnx_template.key(m, ["input_ids", "attention_mask"], "logits") for m in (small, five_tags, other_act)}
    assert len(keys) == 3
    assert onnx_template.key(_tagger(1), ["input_ids", "attention_mask"], "logits") in keys


def test_only_the_most_recently_used_templates_are_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_template, "KEPT", 2)
    for age, name in enumerate(["new", "mid", "old"]):
        (tmp_path / name).mkdir()
        (tmp_path / name / "weights.json").write_text("{}")
        os.utime(tmp_path / name / "weights.json", (1e9 - age * 100, 1e9 - age * 100))
    onnx_template._prune(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mid", "new"]
