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

import hashlib
import json
import math
import os
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
    saved_decoder,
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
    lstm_layers: int = 1
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

    def __init__(self, dim: int, n_tags: int, hidden: int = 256, dropout: float = 0.3, lstm_layers: int = 1) -> None:
        super().__init__()
        self.drop = torch.nn.Dropout(dropout)
        self.proj = torch.nn.Linear(dim, hidden)
        self.lstm = torch.nn.LSTM(hidden, hidden // 2, num_layers=lstm_layers, batch_first=True, bidirectional=True,
                                  dropout=dropout if lstm_layers > 1 else 0.0)
        self.out = torch.nn.Linear(2 * (hidden // 2), n_tags)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.proj(self.drop(x)))
        h, _ = self.lstm(self.drop(h))
        return self.out(self.drop(h))


class FrozenTagModel(torch.nn.Module):
    """The frozen encoder and the head, called as a token-classification model is (``.logits``); with
    ``case``, each subword's case type (``token_type_ids``) is a feature beside the hidden layers, never an
    input of the encoder. The hidden layers pass through fp16, as the head was trained on them (cached)."""

    def __init__(self, encoder: torch.nn.Module, head: TagHead, layers: int, case: bool = False) -> None:
        super().__init__()
        self.encoder, self.head, self.layers, self.case = encoder, head, layers, case

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The last ``layers`` hidden layers, concatenated, in fp16 (what the feature store keeps)."""
        with torch.no_grad():
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return torch.cat(out.hidden_states[-self.layers:], -1).to(torch.float16)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> SimpleNamespace:
        return SimpleNamespace(logits=self.head(with_case(self.hidden(input_ids, attention_mask).float(),
                                                          token_type_ids if self.case else None)))


def with_case(h: torch.Tensor, types: torch.Tensor | None) -> torch.Tensor:
    """Features ``h`` (batch, subwords, dim) with each subword's case type as one more feature, if given."""
    return h if types is None else torch.cat([h, types.unsqueeze(-1).to(h.dtype)], -1)


class FeatureStore:
    """The frozen encoder's hidden layers of each window, kept on disk for the nodes of a run and resumed runs:
    a frozen tagger's data recipes (``clean`` keeps a subset of train's texts) and its refit on train + dev
    read what an earlier fit computed and pay for the head alone. Keyed by encoder, layer count and the
    window's subword ids; each batch of new windows is one shard, an fp16 array read memory-mapped and its
    index (written last, atomically: a shard without one is ignored). ``folder`` None keeps nothing."""

    def __init__(self, folder: Path | None, encoder: str, layers: int) -> None:
        tag = hashlib.sha1(f"{encoder}|{layers}".encode()).hexdigest()[:16]
        self.folder = Path(folder) / tag if folder else None
        self._where: dict[str, tuple[str, int, int]] = {}
        self._arrays: dict[str, np.ndarray] = {}
        self._read: set[str] = set()

    @staticmethod
    def key(ids: Sequence[int]) -> str:
        return hashlib.sha1(np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()

    def _scan(self) -> None:
        if self.folder is None or not self.folder.is_dir():
            return
        for index in sorted(self.folder.glob("*.index.npz")):
            stem = index.name[:-len(".index.npz")]
            if stem in self._read:
                continue
            with np.load(index) as z:
                for k, start, n in zip(z["keys"], z["starts"], z["lengths"]):
                    self._where[str(k)] = (stem, int(start), int(n))
            self._read.add(stem)

    def _rows(self, stem: str, start: int, n: int) -> np.ndarray:
        if stem not in self._arrays:
            assert self.folder is not None
            self._arrays[stem] = np.load(self.folder / f"{stem}.npy", mmap_mode="r")
        return self._arrays[stem][start:start + n]

    def get(self, ids: Sequence[Sequence[int]],
            compute: Callable[[list[list[int]]], list[np.ndarray]]) -> tuple[list[np.ndarray], int]:
        """Each window's features, in ``ids`` order, and how many were read from the store; ``compute`` is
        called once, on the others (each distinct window once)."""
        keys = [self.key(x) for x in ids]
        if any(k not in self._where for k in keys):
            self._scan()
        stored = sum(k in self._where for k in keys)
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k not in self._where:
                first.setdefault(k, i)
        todo = list(first.values())
        fresh = dict(zip((keys[i] for i in todo), compute([list(ids[i]) for i in todo]))) if todo else {}
        if fresh and self.folder is not None:
            self._write(fresh)
        return [fresh[k] if k in fresh else self._rows(*self._where[k]) for k in keys], stored

    def _write(self, fresh: dict[str, np.ndarray]) -> None:
        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        keys = list(fresh)
        stem = hashlib.sha1("".join(keys).encode()).hexdigest()[:20]
        lengths = np.array([len(fresh[k]) for k in keys], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        tmp = self.folder / f".{stem}.{os.getpid()}.tmp.npy"
        np.save(tmp, np.concatenate([fresh[k] for k in keys]))
        os.replace(tmp, self.folder / f"{stem}.npy")
        tmp = self.folder / f".{stem}.{os.getpid()}.tmp.index.npz"
        np.savez(tmp, keys=np.array(keys), starts=starts, lengths=lengths)
        os.replace(tmp, self.folder / f"{stem}.index.npz")
        self._where.update({k: (stem, int(s), int(n)) for k, s, n in zip(keys, starts, lengths)})
        self._read.add(stem)


def feature_folder(embeddings: object | None) -> Path | None:
    """Where a run keeps frozen-tagger features: beside its embedding cache's folder (none without one)."""
    folder = getattr(embeddings, "folder", None)
    return Path(folder).parent / "token-features" if folder else None


class FrozenTagger(SpanTagger):
    """A ``SpanTagger`` whose model is a frozen encoder under a trained head; saved as the head alone."""

    exports = False  # torch serves it (the ONNX exporter takes whole token-classification models)

    def window_hidden(self, ids: list[list[int]], batch_size: int = 32,
                      tick: Callable[[int], None] = lambda n: None) -> list[np.ndarray]:
        """Each window's hidden layers (fp16, (subwords, layers × hidden)), in ``ids`` order."""
        out: list[np.ndarray] = [np.zeros(0)] * len(ids)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        self.model.eval()
        with torch.inference_mode():
            for b in range(0, len(order), batch_size):
                idx = order[b:b + batch_size]
                enc = self.tok.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
                h = self.model.hidden(enc["input_ids"], enc["attention_mask"])
                for row, i in enumerate(idx):
                    out[i] = h[row, :len(ids[i])].numpy()
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
             "lstm_layers": head.lstm.num_layers,
             "max_length": self.max_length, "stride": self.stride, "thresholds": self.thresholds,
             "case_types": self.case, "decoder": self.decoder}, indent=1))


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
    head = TagHead(meta["dim"], 1 + 2 * len(meta["labels"]), meta["hidden"], lstm_layers=meta.get("lstm_layers", 1))
    head.load_state_dict(load_file(str(Path(folder) / "head.safetensors")))
    case = meta.get("case_types", False)
    return FrozenTagger(meta["labels"], meta["encoder"], FrozenTagModel(encoder, head.eval(), meta["layers"], case),
                        tok, max_length=meta["max_length"], stride=meta["stride"],
                        thresholds=meta.get("thresholds", {}), case=case, decoder=saved_decoder(meta))


def _pad(feats: Sequence[np.ndarray], types: Sequence[Sequence[int]] | None,
         labels: Sequence[Sequence[int]] | None = None):
    """One batch of windows' features (with their case types as one more feature, when given), padded; and
    their tags (-100 on padding), when ``labels``."""
    width = max(len(f) for f in feats)
    x = torch.zeros(len(feats), width, feats[0].shape[1] + (types is not None))
    for i, f in enumerate(feats):
        x[i, :len(f), :f.shape[1]] = torch.from_numpy(np.asarray(f, dtype=np.float32))
        if types is not None:
            x[i, :len(f), -1] = torch.tensor(types[i], dtype=torch.float32)
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
        head = TagHead(dim, 1 + 2 * len(types), cfg.hidden, cfg.dropout, cfg.lstm_layers)
        tagger = FrozenTagger(types, pipeline.encoder, FrozenTagModel(encoder, head, cfg.layers, case), tok,
                              max_length=cfg.max_length, stride=cfg.stride, case=case)
        w = windows(tok, [e.text for e in train], cfg.max_length, cfg.stride, case=case)
        wd = windows(tok, [e.text for e in dev], cfg.max_length, cfg.stride, case=case)
        gold = _spans(train)
        labels = [align_labels(off, gold[t], types) for off, t in zip(w["offsets"], w["text"])]
        keep = _within_memory([len(x) for x in w["input_ids"]], dim, rng)
        notes = "" if len(keep) == len(labels) else (
            f"features of {len(keep)} of {len(labels)} training windows kept (at most {MAX_FEATURE_BYTES >> 30} GiB); ")
        store = FeatureStore(feature_folder(ctx.embeddings), pipeline.encoder, cfg.layers)
        bar = ctx.progress("frozen-encoder features", len(keep) + len(wd["input_ids"]))
        ids = [w["input_ids"][i] for i in keep] + wd["input_ids"]
        t_feat = time.monotonic()
        ticked = [0]

        def tick(n: int) -> None:
            ticked[0] += n
            bar(n)

        hidden, stored = store.get(ids, lambda todo: tagger.window_hidden(todo, tick=tick))
        bar(len(ids) - ticked[0])  # windows read from the store, or repeated
        feature_seconds = time.monotonic() - t_feat
        feats, dev_feats = hidden[:len(keep)], hidden[len(keep):]
        cases = [w["types"][i] for i in keep] if case else None
        dev_cases = wd["types"] if case else None
        labels = [labels[i] for i in keep]
        if stored:
            notes += f"features of {stored} of {len(ids)} windows from the feature store; "
        dev_texts, dev_gold = [e.text for e in dev], _spans(dev)

        def score() -> float:
            head.eval()
            with torch.no_grad():
                per_window = [torch.softmax(head(_pad(dev_feats[b:b + 64], _part(dev_cases, b, 64))),
                                            -1).numpy()
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
                x, y = _pad([feats[i] for i in batch], None if cases is None else [cases[i] for i in batch],
                            [labels[i] for i in batch])
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
                                  notes=notes + plan.notes(),
                                  chosen={**plan.chosen(), "feature_seconds": round(feature_seconds, 1)})


def _part(types: list[list[int]] | None, start: int, n: int) -> list[list[int]] | None:
    return None if types is None else types[start:start + n]


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
