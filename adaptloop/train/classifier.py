"""The one model every classification backend produces: encoder → mean pool → linear head.

Frozen, fully fine-tuned and LoRA pipelines differ in how they fit, not in what they are,
so serving and evaluation have a single code path. On disk (one folder):

    adaptloop_model.json   kind, labels, encoder name, whether encoder weights are included
    head.safetensors       weight (k, d), bias (k,)
    encoder/               fine-tuned encoder + tokenizer (absent for frozen-encoder models,
                           which reuse the named base encoder)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from adaptloop.errors import DataError
from adaptloop.train.encoder import EmbeddingCache, embed, load_base
from adaptloop.train.logreg import linear_proba

MODEL_FILE = "adaptloop_model.json"


class EncoderClassifier:
    """A fitted classifier. ``encoder``/``tokenizer`` None means: use the base encoder.

    Args:
        labels: class names, in head-row order.
        encoder_name: the base encoder's name (HF id or path).
        weight: head weight, shape (k, d).
        bias: head bias, shape (k,).
        encoder: fine-tuned encoder module, or None.
        tokenizer: its tokenizer, or None.
    """

    def __init__(self, labels: Sequence[str], encoder_name: str, weight: np.ndarray,
                 bias: np.ndarray, encoder: torch.nn.Module | None = None,
                 tokenizer: object | None = None) -> None:
        self.labels = tuple(labels)
        self.encoder_name = encoder_name
        self.weight = np.asarray(weight, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float32)
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.embeddings: EmbeddingCache | None = None  # see ``share_embeddings``
        self.onnx: Any = None  # an exported encoder (train.onnx_export.attach): embeds instead of torch

    def _modules(self):
        if self.encoder is not None:
            return self.tokenizer, self.encoder
        return load_base(self.encoder_name)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.onnx is not None:
            return self.onnx.embed(list(texts))
        if self.encoder is None and self.embeddings is not None:
            return self.embeddings.get(self.encoder_name, list(texts))
        tok, model = self._modules()
        return embed(tok, model, list(texts))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.proba_from_embeddings(self.embed(texts))

    def proba_from_embeddings(self, emb: np.ndarray) -> np.ndarray:
        return linear_proba(emb, self.weight, self.bias)

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"weight": torch.from_numpy(self.weight), "bias": torch.from_numpy(self.bias)},
                  str(folder / "head.safetensors"))
        meta = {"kind": "encoder_classifier", "labels": list(self.labels),
                "encoder": self.encoder_name, "encoder_included": self.encoder is not None}
        if self.encoder is not None:
            self.encoder.save_pretrained(folder / "encoder", safe_serialization=True)
            self.tokenizer.save_pretrained(folder / "encoder")  # type: ignore[attr-defined]
        (folder / MODEL_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")


def classifiers(model: object) -> list[EncoderClassifier]:
    """The encoder classifiers inside ``model``, in a fixed order (itself, ensemble members, a thresholded
    base)."""
    if isinstance(model, EncoderClassifier):
        return [model]
    out: list[EncoderClassifier] = []
    for inner in [*getattr(model, "members", ()), getattr(model, "base", None)]:
        if inner is not None:
            out += classifiers(inner)
    return out


def _frozen(model: object) -> list[EncoderClassifier]:
    """The frozen-encoder classifiers inside ``model``."""
    return [c for c in classifiers(model) if c.encoder is None]


def share_embeddings(model: object, cache: EmbeddingCache | None) -> object:
    """Let every frozen-encoder classifier inside ``model`` (ensemble members, a thresholded base)
    embed through ``cache``: an evaluation that scores several models on the same texts, or the
    same eval set cycle after cycle, embeds each text once. Not for serving, where every request
    is a new text. Returns ``model``."""
    if cache is not None:
        for clf in _frozen(model):
            clf.embeddings = cache
    return model


def detach_embeddings(model: object) -> object:
    """Undo ``share_embeddings``: every text is embedded again, as serving does. Returns ``model``."""
    for clf in _frozen(model):
        clf.embeddings = None
    return model


def load_model(folder: Path) -> EncoderClassifier:
    """Reload a saved classifier.

    Raises:
        DataError: the folder is not a saved adaptloop model.
    """
    folder = Path(folder)
    meta_path = folder / MODEL_FILE
    if not meta_path.is_file():
        raise DataError(f"{folder} is not a saved adaptloop model (no {MODEL_FILE})")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    head = load_file(str(folder / "head.safetensors"))
    encoder = tokenizer = None
    if meta["encoder_included"]:
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder / "encoder")
        encoder = AutoModel.from_pretrained(folder / "encoder")
        encoder.eval()
    return EncoderClassifier(meta["labels"], meta["encoder"], head["weight"].numpy(),
                             head["bias"].numpy(), encoder, tokenizer)
