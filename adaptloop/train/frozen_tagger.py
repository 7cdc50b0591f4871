"""Extraction backend on a frozen encoder: its last hidden layers, computed once, under a small trained head.

Fine-tuning a base-size encoder as a tagger does not fit a CPU budget (all-mpnet-base-v2 on wnut17: 3,857 s
of training for dev F1 0.715, test 0.466). Frozen, the same encoder costs one forward pass over the data (about
30 tweets a second on 2 cores), and a head over the concatenated last four layers (the feature-based use of a
pretrained encoder in the BERT paper) trains in seconds an epoch on the cached features: a projection, one
bidirectional LSTM layer for context the frozen layers were not tuned to give per token, and a linear layer to
the IOB2 tags, with the O tag's loss weighted as the fine-tuned tagger's (``tagger.o_weight``).

Measured on wnut17 (``benchmarks/frozen_tagger.py``; train 3,054 sentences, test 1,287): fitted in 182 s, test
entity F1 0.423 (0.414 without the case feature) against 0.360–0.368 for MiniLM taggers fine-tuned for
300–390 s, with recall near precision where the fine-tuned taggers hold about half of it. It is the
``frozen-tagger`` strategy: a member for tagger ensembles (a different encoder, trained differently). It
reuses the tagger's windows, labels, decoding and window averaging; its model is torch only (the encoder
is not copied: the saved head names it).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from adaptloop.evaluate.entities import entity_metrics
from adaptloop.train.base import FitContext
from adaptloop.train.encoder import resolve_encoder
from adaptloop.train.loop import UpdatePlan, length_batches
from adaptloop.train.tagger import (
    SpanTagger,
    _load_tokenizer,
    _spans,
    align_labels,
    decode,
    merge_windows,
    o_weight,
    windows,
)
from adaptloop.types import Example, NodeResult, Pipeline, TaskSpec

MAX_FEATURE_BYTES = 4 * 2**30  # cached fp16 features of the training windows; beyond, a random subset trains


@dataclass(frozen=True)
class FrozenTaggerConfig:
    epochs: float = 12.0  # upper bound: early stopping on dev F1 ends sooner
    lr: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 0.01
    layers: int = 4  # last hidden layers, concatenated
    hidden: int = 256
    dropout: float = 0.3
    patience: int = 3  # dev checks (one an epoch) without gain, and min_steps / 2 updates, before stopping
    min_steps: int = 150  # small data: at least this many updates (epochs grow to match)
    max_length: int = 128
    stride: int = 32
    # one more feature per subword: 1 when its characters hold a capital letter (``tagger.case_types``); the
    # encoder stays as it was trained (mpnet lowercases), only the head reads it
    case_types: bool = True

    @classmethod
    def from_hparams(cls, hp: dict) -> FrozenTaggerConfig:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in hp.items() if k in names})


class TagHead(torch.nn.Module):
    """Features → projection → BiLSTM → tag logits."""

    def __init__(self, dim: int, n_tags: int, hidden: int = 256, dropout: float = 0.3) -> None:
        super().__init__()
        self.drop = torch.nn.Dropout(dropout)
        self.proj = torch.nn.Linear(dim, hidden)
        self.lstm = torch.nn.LSTM(hidden, hidden // 2, batch_first=True, bidirectional=True)
        self.out = torch.nn.Linear(2 * (hidden // 2), n_tags)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.proj(self.drop(x)))
        h, _ = self.lstm(self.drop(h))
        return self.out(self.drop(h))


class FrozenTagModel(torch.nn.Module):
    """The frozen encoder and the head, called as a token-classification model is (``.logits``); with
    ``case``, each subword's case type (``token_type_ids``) is a feature beside the hidden layers, never an
    input of the encoder."""

    def __init__(self, encoder: torch.nn.Module, head: TagHead, layers: int, case: bool = False) -> None:
        super().__init__()
        self.encoder, self.head, self.layers, self.case = encoder, head, layers, case

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        h = torch.cat(out.hidden_states[-self.layers:], -1)
        return torch.cat([h, token_type_ids.unsqueeze(-1).to(h.dtype)], -1) if self.case else h

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> SimpleNamespace:
        return SimpleNamespace(logits=self.head(self.features(input_ids, attention_mask, token_type_ids)))


class FrozenTagger(SpanTagger):
    """A ``SpanTagger`` whose model is a frozen encoder under a trained head; saved as the head alone."""

    exports = False  # torch serves it (the ONNX exporter takes whole token-classification models)

    def window_features(self, ids: list[list[int]], types: list[list[int]] | None, batch_size: int = 32,
                        tick: Callable[[int], None] = lambda n: None) -> list[np.ndarray]:
        """Each window's subword features (fp16, (subwords, layers × hidden [+ 1 case type])), in ``ids``
        order; ``types``: each window's case types (``windows(..., case=True)``) when the model reads case."""
        out: list[np.ndarray] = [np.zeros(0)] * len(ids)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        self.model.eval()
        with torch.inference_mode():
            for b in range(0, len(order), batch_size):
                idx = order[b:b + batch_size]
                enc = self.inputs([ids[i] for i in idx], [types[i] for i in idx] if self.case else None)
                h = self.model.features(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
                for row, i in enumerate(idx):
                    out[i] = h[row, :len(ids[i])].to(torch.float16).numpy()
                tick(len(idx))
        return out

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(self.model.head.state_dict(), str(folder / "head.safetensors"))
        head = self.model.head
        (folder / "adaptloop_model.json").write_text(json.dumps(
            {"kind": "frozen-tagger", "labels": list(self.labels), "encoder": self.encoder_name,
             "layers": self.model.layers, "dim": head.proj.in_features, "hidden": head.proj.out_features,
             "max_length": self.max_length, "stride": self.stride, "thresholds": self.thresholds,
             "case_types": self.case}, indent=1))


def _encoder(name: str):
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    path = resolve_encoder(name)
    model = AutoModel.from_pretrained(path).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, _load_tokenizer(path)


def load_frozen_tagger(folder: Path) -> FrozenTagger:
    from safetensors.torch import load_file

    meta = json.loads((Path(folder) / "adaptloop_model.json").read_text(encoding="utf-8"))
    encoder, tok = _encoder(meta["encoder"])
    head = TagHead(meta["dim"], 1 + 2 * len(meta["labels"]), meta["hidden"])
    head.load_state_dict(load_file(str(Path(folder) / "head.safetensors")))
    case = meta.get("case_types", False)
    return FrozenTagger(meta["labels"], meta["encoder"], FrozenTagModel(encoder, head.eval(), meta["layers"], case),
                        tok, max_length=meta["max_length"], stride=meta["stride"],
                        thresholds=meta.get("thresholds", {}), case=case)


def _pad(feats: Sequence[np.ndarray], labels: Sequence[Sequence[int]] | None = None):
    width = max(len(f) for f in feats)
    x = torch.zeros(len(feats), width, feats[0].shape[1])
    for i, f in enumerate(feats):
        x[i, :len(f)] = torch.from_numpy(f.astype(np.float32))
    if labels is None:
        return x
    y = torch.full((len(feats), width), -100, dtype=torch.long)
    for i, lab in enumerate(labels):
        y[i, :len(lab)] = torch.tensor(lab)
    return x, y


class FrozenTaggerTrainer:
    """Features of the frozen encoder for train and dev once, then the head, early-stopped on dev entity F1."""

    def fit(self, spec: TaskSpec, pipeline: Pipeline, train: Sequence[Example], dev: Sequence[Example],
            ctx: FitContext) -> tuple[FrozenTagger, NodeResult]:
        cfg = FrozenTaggerConfig.from_hparams(pipeline.hparams)
        t0 = time.monotonic()
        torch.manual_seed(pipeline.seed)
        rng = np.random.default_rng(pipeline.seed)
        types = list(spec.labels)
        encoder, tok = _encoder(pipeline.encoder)
        case = cfg.case_types
        dim = encoder.config.hidden_size * cfg.layers + int(case)
        head = TagHead(dim, 1 + 2 * len(types), cfg.hidden, cfg.dropout)
        tagger = FrozenTagger(types, pipeline.encoder, FrozenTagModel(encoder, head, cfg.layers, case), tok,
                              max_length=cfg.max_length, stride=cfg.stride, case=case)
        w = windows(tok, [e.text for e in train], cfg.max_length, cfg.stride, case=case)
        wd = windows(tok, [e.text for e in dev], cfg.max_length, cfg.stride, case=case)
        gold = _spans(train)
        labels = [align_labels(off, gold[t], types) for off, t in zip(w["offsets"], w["text"])]
        keep = _within_memory([len(x) for x in w["input_ids"]], dim, rng)
        notes = "" if len(keep) == len(labels) else (
            f"features of {len(keep)} of {len(labels)} training windows kept (at most {MAX_FEATURE_BYTES >> 30} GiB); ")
        bar = ctx.progress("frozen-encoder features", len(keep) + len(wd["input_ids"]))
        feats = tagger.window_features([w["input_ids"][i] for i in keep],
                                       [w["types"][i] for i in keep] if case else None, tick=bar)
        labels = [labels[i] for i in keep]
        dev_feats = tagger.window_features(wd["input_ids"], wd["types"], tick=bar)
        dev_texts, dev_gold = [e.text for e in dev], _spans(dev)

        def score() -> float:
            head.eval()
            with torch.no_grad():
                per_window = [torch.softmax(head(_pad(dev_feats[b:b + 64])), -1).numpy()
                              for b in range(0, len(dev_feats), 64)]
            head.train()
            probs = [p[r, :len(dev_feats[b * 64 + r])] for b, p in enumerate(per_window) for r in range(p.shape[0])]
            merged = merge_windows(wd, len(dev), probs, 1 + 2 * len(types))
            pred = [[(d["start"], d["end"], d["label"]) for d in decode(t, k, p, types)]
                    for t, (k, p) in zip(dev_texts, merged)]
            return entity_metrics(dev_texts, dev_gold, pred)["f1"]

        opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        tag_weight = torch.tensor([o_weight(labels)] + [1.0] * (2 * len(types)))
        steps_per_epoch = max(1, math.ceil(len(feats) / cfg.batch_size))
        plan = UpdatePlan(opt, total=max(int(cfg.epochs * steps_per_epoch), cfg.min_steps),
                          steps_per_epoch=steps_per_epoch, ctx=ctx, warmup=0.0,
                          eval_every=min(25, steps_per_epoch) if dev else 10**9, patience=cfg.patience,
                          min_gap=max(cfg.min_steps // 2, steps_per_epoch), floor=0.0, score_key="dev_f1",
                          eval_seconds=lambda per_step: per_step * max(1, len(dev_feats)) / cfg.batch_size / 3)
        bar = ctx.progress("frozen-tagger head", plan.total)
        head.train()
        while not plan.stop:
            for batch in length_batches([len(f) for f in feats], cfg.batch_size, rng):
                x, y = _pad([feats[i] for i in batch], [labels[i] for i in batch])
                logits = head(x)
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                                         ignore_index=-100, weight=tag_weight)
                loss.backward()
                mask = y != -100
                bar(1)
                if plan.after_step(list(head.parameters()), opt, loss, score=score, state=head.state_dict,
                                   hits=int((logits.detach().argmax(-1)[mask] == y[mask]).sum()),
                                   seen=int(mask.sum())):
                    break
        if plan.best_state is not None:
            head.load_state_dict(plan.best_state)
        head.eval()
        return tagger, NodeResult(dev_metrics={"f1": max(plan.best_score, 0.0)},
                                  train_seconds=time.monotonic() - t0, curve=plan.curve,
                                  notes=notes + plan.notes(), chosen=plan.chosen())


def _within_memory(lengths: Sequence[int], dim: int, rng: np.random.Generator) -> list[int]:
    """Indices of the training windows whose fp16 features fit ``MAX_FEATURE_BYTES`` (all, or a random subset)."""
    if sum(lengths) * dim * 2 <= MAX_FEATURE_BYTES:
        return list(range(len(lengths)))
    keep, total = [], 0
    for i in rng.permutation(len(lengths)).tolist():
        if total + lengths[i] * dim * 2 > MAX_FEATURE_BYTES:
            break
        keep.append(i)
        total += lengths[i] * dim * 2
    return sorted(keep)
