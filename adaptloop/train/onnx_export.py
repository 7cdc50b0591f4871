"""ONNX export of a trained classifier's encoders, or of a tagger, served with ONNX Runtime.

The part of an ``EncoderClassifier`` that costs (tokens → transformer → mean pool → L2 norm) is
exported by torch as one ONNX graph (or written from the template of its architecture this machine
keeps, with the model's weights put in: ``train.onnx_template``), quantized to int8 by ONNX Runtime's
dynamic quantizer when first served
(matmul weights int8 with a scale per output channel, activations quantized on the fly: the
standard CPU recipe for transformer encoders); the linear head stays in numpy. A second, mixed
int8 graph keeps each feed-forward block's output projection in fp32 (the matmul fed by GELU:
its inputs are skewed, with outliers that one uint8 scale per tensor cannot hold) and uses 7-bit
weights; it is what serves when the all-int8 graph moves too many predictions. Ensembles and
thresholded models export every encoder they hold. ``attach`` puts the exported encoders under a
loaded model, which then embeds through ONNX Runtime: no torch forward pass at serving time.

A tagger (``SpanTagger``, or each member of a ``TaggerEnsemble``) exports its whole
token-classification model (tokens → transformer → per-subword tag logits) the same way;
windowing, averaging and decoding to character spans stay in Python, so the spans come out
exactly as torch's decoding makes them.

An export folder:

    enc-<i>/model.onnx        fp32 graph of the i-th encoder (``classifiers`` order)
    enc-<i>/model.int8.onnx   the same, dynamically quantized (made when first opened: ``quantized``)
    enc-<i>/model.int8-mixed.onnx   the same, quantized but for the feed-forward output projections (likewise)
    enc-<i>/tokenizer*        its tokenizer
    tagger/model(.int8|.int8-mixed).onnx  a tagger's graphs (input ids, attention mask[, case types] → tag logits)
    tagger-<i>/...            the same for the i-th member of a tagger ensemble

Whether an export may serve (its parity with torch on a frozen eval set) is the agent's call
(``agent/export.py``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptloop.train import onnx_template
from adaptloop.train.classifier import classifiers
from adaptloop.train.encoder import MAX_LENGTH, mean_pool, padding_chunks
from adaptloop.train.tagger import SpanTagger

PRECISIONS = ("int8", "int8-mixed", "fp32")  # fastest first: the order an export is tried in
_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx", "int8-mixed": "model.int8-mixed.onnx"}


class _Pooled(torch.nn.Module):
    """The encoder up to the sentence embedding, as one graph to export."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return mean_pool(out.last_hidden_state, attention_mask)


class _Logits(torch.nn.Module):
    """A token-classification model up to its per-subword logits, as one graph to export."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if token_type_ids is None:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


def taggers(model: Any) -> list[SpanTagger]:
    """The taggers ``model`` runs: itself, or a tagger ensemble's members; none when one of them does not
    export whole (a frozen-encoder tagger: torch serves it)."""
    if isinstance(model, SpanTagger):
        return [model] if model.exports else []
    members = getattr(model, "members", [])
    return list(members) if members and all(isinstance(m, SpanTagger) and m.exports for m in members) else []


def _tagger_dirs(model: Any, folder: Path) -> list[tuple[SpanTagger, Path]]:
    """Each tagger of ``model`` with its graphs' folder: ``tagger`` for a lone tagger, ``tagger-<i>`` for members."""
    if isinstance(model, SpanTagger) and model.exports:
        return [(model, Path(folder) / "tagger")]
    return [(t, Path(folder) / f"tagger-{i}") for i, t in enumerate(taggers(model))]


def exportable(model: Any) -> bool:
    """Whether this exporter knows ``model``: encoder classifiers (and what holds them) or taggers."""
    return bool(taggers(model)) or bool(classifiers(model))


def _write(module: torch.nn.Module, tok: Any, dest: Path, output: str, *, types: bool = False) -> Path:
    """``module`` (input ids, attention mask[, token types when ``types``] → ``output``) as an fp32 graph, with
    ``tok``, in ``dest``: from this architecture's template when the machine holds one, else exported by torch
    (and kept as the template). The int8 graphs are quantized when first opened (``quantized``)."""
    dest.mkdir(parents=True, exist_ok=True)
    sample = tok(["an example to trace the graph with", "two"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if types else [])
    args = tuple(sample[n] if n != "token_type_ids" else (sample["input_ids"] % 2) for n in names)
    module = module.to("cpu").eval()
    graph = dest / _FILES["fp32"]
    key = onnx_template.key(module, names, output)
    if not onnx_template.fill(key, module, dict(zip(names, args)), graph):
        batch, tokens = torch.export.Dim("batch", max=4096), torch.export.Dim("tokens", max=512)
        with torch.no_grad():  # torch.export-based exporter; one self-contained file
            torch.onnx.export(module, args, str(graph), dynamo=True, external_data=False, verbose=False,
                              input_names=names, output_names=[output],
                              dynamic_shapes={n: {0: batch, 1: tokens} for n in names})
        onnx_template.keep(key, module, graph)
    tok.save_pretrained(dest)
    return dest


def quantized(folder: Path, precision: str) -> Path:
    """The graph of ``precision`` in export ``folder``, quantized from its fp32 graph on first use (an export
    serves one precision: the parity check stops at the first that passes, so the others are never made)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = Path(folder) / _FILES[precision]
    if path.is_file():
        return path
    fp32, staging = Path(folder) / _FILES["fp32"], path.with_name(path.name + f".{os.getpid()}.tmp")
    if precision == "int8":
        # per-channel weight scales on the matmuls: per-tensor scales moved MiniLM's embeddings to a mean
        # cosine of 0.969 with torch on banking77 texts (5% of eval predictions changed), per-channel 0.993
        quantize_dynamic(str(fp32), str(staging), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
    else:
        # mixed: a 3-layer MiniLM student agreed with torch on 99.34% of 4,077 banking77 texts all-int8,
        # 99.51% with the GELU-fed projections in fp32, 99.66% with 7-bit weights as well
        quantize_dynamic(str(fp32), str(staging), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=True, op_types_to_quantize=["MatMul"], nodes_to_exclude=_fed_by_gelu(fp32))
    os.replace(staging, path)
    return path


def _fed_by_gelu(graph: Path) -> list[str]:
    """Names of the matmuls whose input is a GELU's output: the feed-forward output projections."""
    import onnx

    nodes = onnx.load(str(graph), load_external_data=False).graph.node
    gelu = {out for n in nodes if n.op_type in ("Gelu", "FastGelu", "BiasGelu") for out in n.output}
    return [n.name for n in nodes if n.op_type == "MatMul" and n.input and n.input[0] in gelu]


def export(model: Any, folder: Path) -> list[Path]:
    """Write the fp32, int8 and mixed int8 ONNX graphs (and tokenizer) of every encoder in ``model``, or of its
    taggers.

    Raises:
        ValueError: ``model`` is nothing this exporter knows.
    """
    tagged = _tagger_dirs(model, folder)
    if tagged:
        return [_write(_Logits(t.model), t.tok, dest, "logits", types=t.case) for t, dest in tagged]
    found = classifiers(model)
    if not found:
        raise ValueError(f"{type(model).__name__} holds no encoder classifier or tagger to export")
    written = []
    for i, clf in enumerate(found):
        tok, enc = clf._modules()
        written.append(_write(_Pooled(enc), tok, Path(folder) / f"enc-{i}", "sentence_embedding"))
    return written


def _session(folder: Path, precision: str, threads: int) -> Any:
    """An ONNX Runtime CPU session on the graph of ``precision`` in ``folder``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    # no busy-waiting between runs: on a small machine the spinning threads take the cores the server's
    # event loop (and a client on the same box) need between forward passes
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(quantized(folder, precision)), opts, providers=["CPUExecutionProvider"])


class OnnxLogits:
    """A tagger's per-subword logits from its exported graph (``SpanTagger.token_probs`` calls it)."""

    def __init__(self, folder: Path, precision: str = "int8", threads: int = 0) -> None:
        self.session = _session(folder, precision, threads)
        self.precision = precision

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray,
                 token_type_ids: np.ndarray | None = None) -> np.ndarray:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:  # a tagger trained with case types
            feed["token_type_ids"] = token_type_ids
        return self.session.run(None, {k: v.astype(np.int64) for k, v in feed.items()})[0]


class OnnxEncoder:
    """Sentence embeddings from an exported encoder through ONNX Runtime (CPU)."""

    def __init__(self, folder: Path, precision: str = "int8", threads: int = 0) -> None:
        from transformers import AutoTokenizer

        self.session = _session(folder, precision, threads)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.precision = precision

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        texts = list(texts)
        out: np.ndarray | None = None
        for idx in padding_chunks([len(t) for t in texts], batch_size):  # little padding per pass
            batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                   max_length=MAX_LENGTH, return_tensors="np")
            e = self.session.run(None, {"input_ids": batch["input_ids"].astype(np.int64),
                                        "attention_mask": batch["attention_mask"].astype(np.int64)})[0]
            if out is None:
                out = np.zeros((len(texts), e.shape[1]), dtype=np.float32)
            out[idx] = e
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def attach(model: Any, folder: Path, precision: str = "int8", threads: int = 0) -> Any:
    """Make every encoder classifier in ``model`` embed through its exported graph, or a tagger tag
    through its own. Returns ``model``."""
    tagged = _tagger_dirs(model, folder)
    if tagged:
        for t, dest in tagged:
            t.onnx = OnnxLogits(dest, precision, threads)
        return model
    for i, clf in enumerate(classifiers(model)):
        clf.onnx = OnnxEncoder(Path(folder) / f"enc-{i}", precision, threads)
    return model
