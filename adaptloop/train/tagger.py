"""Extraction backend: token classification over subwords, aligned to character spans.

Gold spans become per-subword IOB2 labels through the fast tokenizer's offsets (a subword
that starts at or before a span's start is ``B-``, later ones ``I-``; special tokens are
ignored by the loss). Long inputs are cut into overlapping windows (``max_length`` subwords,
``stride`` shared); at prediction time the probabilities of a subword seen in several
windows are averaged. Decoding reads each word's tag from its first subword, finds the most
probable tag sequence the IOB2 grammar allows (an ``I-`` only after a ``B-`` or ``I-`` of its
type; Viterbi), and turns it into character spans, each with a score (mean probability of its
tags) that per-type thresholds may filter. Strategies: ``tagger`` (full fine-tune) and
``tagger-lora`` (PEFT LoRA; the head is trained fully). Early stopping and checkpoint selection use dev entity F1 only.

Case is the strongest cue an entity has, and MiniLM's tokenizer lowercases it away. For an
encoder whose tokenizer drops case and whose model has two token types (BERT-style), each
subword's token type can say whether its characters hold a capital letter (the ``case_types``
hparam, off by default until it is measured to pay): the type embedding, trained with the rest,
hands the lost cue back. No new weights; the saved model loads and exports as before, with the
types as a third input.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptloop.data.spans import Span, snap, word_units
from adaptloop.errors import NotFoundError
from adaptloop.evaluate.entities import entity_metrics
from adaptloop.train.base import FitContext
from adaptloop.train.encoder import cuda_bf16, freeze_large_vocabulary, resolve_encoder
from adaptloop.train.loop import UpdatePlan, length_batches
from adaptloop.types import Example, NodeResult, Pipeline, TaskSpec

log = logging.getLogger(__name__)

TAGGER_LORA_DEFAULTS: dict[str, Any] = {"epochs": 6.0, "lr": 1e-3, "head_lr": 1e-3}


@dataclass(frozen=True)
class TaggerConfig:
    epochs: float = 6.0  # upper bound; the deadline and early stopping may end sooner
    lr: float = 1e-4
    head_lr: float = 1e-3  # the head starts random: it moves faster than the encoder
    batch_size: int = 16
    warmup: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 128  # subwords per window
    stride: int = 32  # subwords shared by consecutive windows
    evals_per_epoch: int = 1
    patience: int = 2  # dev checks without gain (and at least min_steps / 2 updates) before stopping
    min_steps: int = 150  # small data: at least this many updates (epochs grow to match)
    lora_r: int = 8
    lora_alpha: int = 16
    # token type 1 for subwords with a capital letter, where the tokenizer drops case. Off by default: in
    # one 20-minute presidio_pii search with it on, test F1 went 0.685 -> 0.668 (PERSON 0.854 -> 0.781),
    # against +1.4 in a same-seed A/B of one tagger (benchmarks/case_types.py; docs/results.md)
    case_types: bool = False
    # loss weight of the O tag; None: from the data (``o_weight``)
    o_weight: float | None = None

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.lr <= 0 or self.head_lr <= 0:
            raise ValueError("epochs, lr and head_lr must be positive")
        if not 0 <= self.stride < self.max_length // 2:
            raise ValueError("stride must be >= 0 and below half of max_length")

    @classmethod
    def from_hparams(cls, hp: dict) -> TaggerConfig:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in hp.items() if k in names})


def tag_names(types: Sequence[str]) -> list[str]:
    return ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]


def _load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if not tok.is_fast:
        raise NotFoundError(f"encoder '{path}' has no fast tokenizer; extraction needs character offsets "
                            "(pick an encoder with a tokenizer.json)")
    return tok


def windows(tok, texts: Sequence[str], max_length: int, stride: int, *, case: bool = False) -> dict[str, list]:
    """Tokenise into overlapping windows: input ids, offsets, the text each came from and, when
    ``case``, each subword's case type (``case_types``; else no types). No texts: no windows."""
    if not texts:  # the tokenizer cannot batch an empty list (a refit on train + dev scores no dev)
        return {"input_ids": [], "offsets": [], "text": [], "types": [] if case else None}
    enc = tok(list(texts), truncation=True, max_length=max_length, stride=stride,
              return_overflowing_tokens=True, return_offsets_mapping=True, padding=False)
    return {"input_ids": enc["input_ids"], "offsets": enc["offset_mapping"],
            "text": enc["overflow_to_sample_mapping"],
            "types": [case_types(texts[t], off) for off, t in zip(enc["offset_mapping"],
                                                                  enc["overflow_to_sample_mapping"])] if case else None}


def merge_windows(w: dict[str, list], n_texts: int, per_window: Sequence[np.ndarray],
                  width: int) -> list[tuple[list[tuple[int, int]], np.ndarray]]:
    """Per text: its subwords' character offsets and tag probabilities, from each window's probabilities
    (``windows`` order; a subword two windows share gets their mean)."""
    acc: list[dict[tuple[int, int], np.ndarray]] = [{} for _ in range(n_texts)]
    cnt: list[dict[tuple[int, int], int]] = [{} for _ in range(n_texts)]
    for i, probs in enumerate(per_window):
        t = w["text"][i]
        for j, (s, e) in enumerate(w["offsets"][i]):
            if e <= s:
                continue
            key = (int(s), int(e))
            acc[t][key] = acc[t].get(key, 0.0) + probs[j]
            cnt[t][key] = cnt[t].get(key, 0) + 1
    out = []
    for a, c in zip(acc, cnt):
        keys = sorted(a)
        out.append((keys, np.stack([a[k] / c[k] for k in keys]) if keys else np.zeros((0, width))))
    return out


def case_types(text: str, offsets: Sequence[tuple[int, int]]) -> list[int]:
    """Per subword: 1 when its characters hold a capital letter, else 0 (special tokens 0)."""
    return [int(e > s and any(c.isupper() for c in text[s:e])) for s, e in offsets]


def drops_case(tok) -> bool:
    """Whether ``tok`` maps a word and its capitalised form to the same ids (an uncased vocabulary)."""
    return tok("word Word WORD", add_special_tokens=False)["input_ids"] == tok(
        "word word word", add_special_tokens=False)["input_ids"]


def takes_case_types(tok, model) -> bool:
    """Whether case can ride on the token types: the tokenizer drops it and the model has two types."""
    return drops_case(tok) and getattr(model.config, "type_vocab_size", 0) >= 2


def o_weight(labels: Sequence[Sequence[int]]) -> float:
    """The O tag's loss weight: the square root of the entity subwords' share over O's (square-root inverse
    frequency, O against all entity tags together), at most 1.

    O outnumbers entity subwords 20 to 1 on wnut17 (weight 0.22; presidio_pii 3 to 2, 0.8): unweighted, a
    tagger first learns to say O everywhere and sits there (the cased e5 tagger: 225 updates at dev F1 0
    before its first entity). Weighted, it found entities after 100 and stood at dev F1 0.53 after 330 s
    against 0.45 (docs/results.md, "The O tag's weight")."""
    flat = np.concatenate([np.asarray(lab) for lab in labels]) if len(labels) else np.zeros(0)
    flat = flat[flat != -100]
    o = float((flat == 0).mean()) if flat.size else 1.0
    return 1.0 if o in (0.0, 1.0) else min(1.0, math.sqrt((1 - o) / o))


def align_labels(offsets: Sequence[tuple[int, int]], spans: Sequence[Span], types: Sequence[str]) -> list[int]:
    """Per-subword label ids for one window: -100 for special tokens, O=0, B-t=1+2k, I-t=2+2k."""
    index = {t: i for i, t in enumerate(types)}
    out = []
    for s, e in offsets:
        if e <= s:
            out.append(-100)
            continue
        hit = next((sp for sp in spans if s < sp[1] and e > sp[0] and sp[2] in index), None)
        if hit is None:
            out.append(0)
        else:
            out.append(1 + 2 * index[hit[2]] + (0 if s <= hit[0] else 1))
    return out


# how a model reads its tag probabilities, kept with it: the IOB2 grammar over words (``decode``'s default), or
# each subword's argmax read leniently, as every tagger saved before the grammar was measured to pay did (a saved
# model without the field keeps decoding so, as its gate saw it)
DECODER, GREEDY = "iob2", "greedy"


def saved_decoder(meta: dict[str, Any]) -> str:
    """The decoder a saved model's metadata names; ``GREEDY`` for one saved before decoders were recorded."""
    return meta.get("decoder", GREEDY)


def on_words(words: Sequence[tuple[int, int]], keys: Sequence[tuple[int, int]], p: np.ndarray,
             width: int) -> np.ndarray:
    """Tag probabilities per word: those of the first subword that overlaps it (``O`` for a word no subword
    covers, such as one past a window's reach). A subword that began in an earlier word (a SentencePiece
    piece such as ``U.S.`` covers four words) is continued, not begun again: its ``B-t`` mass goes to ``I-t``."""
    out = np.zeros((len(words), width))
    out[:, 0] = 1.0
    starts = np.array([k[0] for k in keys]) if len(keys) else np.zeros(0)
    ends = np.array([k[1] for k in keys]) if len(keys) else np.zeros(0)
    for i, (s, e) in enumerate(words):
        hit = np.flatnonzero((starts < e) & (ends > s))
        if hit.size:
            out[i] = p[hit[0]]
            if starts[hit[0]] < s:
                out[i, 2::2] += out[i, 1::2]
                out[i, 1::2] = 0.0
    return out


def bio_viterbi(probs: np.ndarray) -> np.ndarray:
    """The most probable tag sequence (O=0, B-t=1+2k, I-t=2+2k) in which every ``I-t`` follows ``B-t`` or
    ``I-t``: the per-unit probabilities read as independent, the IOB2 grammar as the only transition rule."""
    n, width = probs.shape
    if n == 0:
        return np.zeros(0, dtype=int)
    logp = np.log(np.clip(probs, 1e-12, None))
    inside = np.zeros(width, dtype=bool)
    inside[2::2] = True
    allowed = np.ones((width, width), dtype=bool)  # allowed[prev, cur]
    allowed[:, inside] = False
    for k in range(2, width, 2):  # I-t after B-t or I-t of the same type
        allowed[k - 1, k] = allowed[k, k] = True
    trans = np.where(allowed, 0.0, -np.inf)
    score = np.where(inside, -np.inf, logp[0])
    back = np.zeros((n, width), dtype=int)
    for i in range(1, n):
        cand = score[:, None] + trans
        back[i] = cand.argmax(0)
        score = cand.max(0) + logp[i]
    tags = np.zeros(n, dtype=int)
    tags[-1] = int(score.argmax())
    for i in range(n - 1, 0, -1):
        tags[i - 1] = back[i, tags[i]]
    return tags


def lean_from_o(probs: np.ndarray, bias: float) -> np.ndarray:
    """``probs`` with ``O``'s probability divided by e**bias (its log-odds against every entity tag lowered by
    ``bias``): the tags chosen from them then say "entity" where the model was less sure."""
    if not bias:
        return probs
    out = np.array(probs, dtype=float, copy=True)
    out[:, 0] *= math.exp(-bias)
    return out


def decode(text: str, tokens: Sequence[tuple[int, int]], probs: np.ndarray, types: Sequence[str],
           thresholds: dict[str, float] | None = None, *, decoder: str = DECODER,
           o_bias: float = 0.0) -> list[dict[str, Any]]:
    """Character spans from per-subword tag probabilities (subwords in text order).

    ``decoder=DECODER`` (the default): each word takes its first subword's probabilities (taggers are
    trained to tag a word's first piece ``B-``), and the tags are the most probable IOB2 sequence over the
    words (``bio_viterbi``): an ``I-t`` no entity of type t opened is not read as one. ``GREEDY`` (how a
    model saved before decoders were recorded reads): each subword's argmax, read leniently: ``B-t`` or a
    change of type starts an entity, ``I-t`` continues one of type t (or starts one, as in IOB1), a ``B-``
    inside a word continues the entity its word began. Spans are widened to whole words; the score is the
    mean probability of the chosen tags, which per-type thresholds may filter. ``o_bias``: log-odds taken
    from ``O`` before the tags are chosen (``lean_from_o``); above 0 more words are read as entities.
    """
    if decoder not in (DECODER, GREEDY):
        raise ValueError(f"unknown tag decoder {decoder!r}: use {DECODER!r} or {GREEDY!r}")
    constrained = decoder == DECODER
    if constrained:
        words = word_units(text)
        tokens, probs = words, on_words(words, tokens, probs, 1 + 2 * len(types))
        chosen = bio_viterbi(lean_from_o(probs, o_bias))
    else:
        chosen = np.asarray([int(p.argmax()) for p in lean_from_o(probs, o_bias)], dtype=int)
    found: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    prev_end = -1

    def close() -> None:
        nonlocal cur
        if cur is not None:
            s, e = snap(text, cur["start"], cur["end"])
            if e > s:
                found.append({"start": s, "end": e, "label": types[cur["type"]],
                              "score": round(float(np.mean(cur["p"])), 5)})
        cur = None

    for (s, e), p, k in zip(tokens, probs, chosen):
        if k == 0:
            close()
            prev_end = e
            continue
        typ, begin = (k - 1) // 2, (k - 1) % 2 == 0
        inside_word = not constrained and s == prev_end and s > 0 and text[s - 1].isalnum() and text[s].isalnum()
        if cur is not None and cur["type"] == typ and (not begin or inside_word):
            cur["end"] = e
            cur["p"].append(float(p[k]))
        else:
            close()
            cur = {"start": s, "end": e, "type": typ, "p": [float(p[k])]}
        prev_end = e
    close()
    # merge spans a snap made overlap (two subword entities in one word)
    merged: list[dict[str, Any]] = []
    for sp in sorted(found, key=lambda d: d["start"]):
        if merged and sp["start"] < merged[-1]["end"]:
            merged[-1]["end"] = max(merged[-1]["end"], sp["end"])
            continue
        merged.append(sp)
    thr = thresholds or {}
    return [sp for sp in merged if sp["score"] >= thr.get(sp["label"], 0.0)]


class SpanTagger:
    """A fitted token-classification model that returns character spans."""

    kind = "tagger"
    exports = True  # its model exports to ONNX whole (``train.onnx_export``)

    def __init__(self, types: Sequence[str], encoder_name: str, model, tok, *, max_length: int = 128,
                 stride: int = 32, thresholds: dict[str, float] | None = None, case: bool = False,
                 decoder: str = DECODER) -> None:
        self.labels = tuple(types)  # entity types (the TrainedModel protocol's labels)
        self.encoder_name = encoder_name
        self.model = model
        self.tok = tok
        self.max_length = max_length
        self.stride = stride
        self.thresholds = dict(thresholds or {})
        self.case = case  # token types carry each subword's case (trained so)
        self.decoder = decoder  # DECODER, or GREEDY for a model saved before decoders were recorded
        self.onnx: Any = None  # an exported graph (train.onnx_export.attach): tags instead of torch

    def inputs(self, ids: list[list[int]], types: list[list[int]] | None, kind: str = "pt") -> dict[str, Any]:
        """One padded batch as the model takes it: ids, attention mask and, when trained so, case types."""
        batch = self.tok.pad({"input_ids": ids, "token_type_ids": types} if self.case else {"input_ids": ids},
                             return_tensors=kind)
        return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}

    def _probs(self, ids: list[list[int]], types: list[list[int]] | None, device: torch.device) -> np.ndarray:
        """Tag probabilities of one padded batch, (batch, subwords, tags)."""
        if self.onnx is not None:
            logits = self.onnx(**self.inputs(ids, types, "np")).astype(np.float32)
            logits -= logits.max(-1, keepdims=True)
            e = np.exp(logits)
            return e / e.sum(-1, keepdims=True)
        logits = self.model(**{k: v.to(device) for k, v in self.inputs(ids, types).items()}).logits
        return torch.softmax(logits.float(), -1).cpu().numpy()

    def token_probs(self, texts: Sequence[str], batch_size: int = 32) -> list[tuple[list[tuple[int, int]], np.ndarray]]:
        """Per text: its subwords' character offsets and tag probabilities (windows averaged)."""
        if not texts:
            return []
        w = windows(self.tok, texts, self.max_length, self.stride, case=self.case)
        device = next(self.model.parameters()).device
        per_window: list[np.ndarray] = [np.zeros(0)] * len(w["input_ids"])
        order = sorted(range(len(w["input_ids"])), key=lambda i: len(w["input_ids"][i]))
        self.model.eval()
        with torch.inference_mode(), cuda_bf16(device):
            for b in range(0, len(order), batch_size):
                idx = order[b:b + batch_size]
                probs = self._probs([w["input_ids"][i] for i in idx],
                                    [w["types"][i] for i in idx] if self.case else None, device)
                for row, i in enumerate(idx):
                    per_window[i] = probs[row, :len(w["input_ids"][i])]
        return merge_windows(w, len(texts), per_window, 1 + 2 * len(self.labels))

    def predict_spans(self, texts: Sequence[str], *, thresholds: dict[str, float] | None = None,
                      ) -> list[list[dict[str, Any]]]:
        """Entities per text: ``{"start", "end", "label", "score"}`` with character offsets."""
        thr = self.thresholds if thresholds is None else thresholds
        return [decode(t, keys, p, self.labels, thr, decoder=self.decoder)
                for t, (keys, p) in zip(texts, self.token_probs(texts))]

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder / "encoder")
        self.tok.save_pretrained(folder / "encoder")
        (folder / "adaptloop_model.json").write_text(json.dumps(
            {"kind": "tagger", "labels": list(self.labels), "encoder": self.encoder_name,
             "max_length": self.max_length, "stride": self.stride, "thresholds": self.thresholds,
             "case_types": self.case, "decoder": self.decoder}, indent=1))


def load_tagger(folder: Path) -> SpanTagger:
    from transformers import AutoModelForTokenClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    meta = json.loads((Path(folder) / "adaptloop_model.json").read_text(encoding="utf-8"))
    model = AutoModelForTokenClassification.from_pretrained(Path(folder) / "encoder")
    tok = _load_tokenizer(str(Path(folder) / "encoder"))
    return SpanTagger(meta["labels"], meta["encoder"], model.eval(), tok, max_length=meta["max_length"],
                      stride=meta["stride"], thresholds=meta.get("thresholds", {}), case=meta.get("case_types", False),
                      decoder=saved_decoder(meta))


def _spans(examples: Sequence[Example]) -> list[list[Span]]:
    return [[tuple(s) for s in e.spans] for e in examples]


def dev_f1(model: SpanTagger, dev: Sequence[Example]) -> float:
    texts = [e.text for e in dev]
    pred = [[(d["start"], d["end"], d["label"]) for d in row] for row in model.predict_spans(texts)]
    return entity_metrics(texts, _spans(dev), pred)["f1"]


class TaggerTrainer:
    """Full fine-tune (``lora=False``) or LoRA of an encoder with a token-classification head."""

    def __init__(self, *, lora: bool = False) -> None:
        self.lora = lora

    def fit(self, spec: TaskSpec, pipeline: Pipeline, train: Sequence[Example], dev: Sequence[Example],
            ctx: FitContext) -> tuple[SpanTagger, NodeResult]:
        from transformers import AutoModelForTokenClassification

        cfg = TaggerConfig.from_hparams(pipeline.hparams)
        t0 = time.monotonic()
        torch.manual_seed(pipeline.seed)
        rng = np.random.default_rng(pipeline.seed)
        device = torch.device(ctx.device)
        types = list(spec.labels)
        names = tag_names(types)
        path = resolve_encoder(pipeline.encoder)
        tok = _load_tokenizer(path)
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # "newly initialised head" is expected here
        hf_logging.disable_progress_bar()
        model = AutoModelForTokenClassification.from_pretrained(
            path, num_labels=len(names), id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)})
        case = cfg.case_types and takes_case_types(tok, model)
        if self.lora:
            from peft import LoraConfig, TaskType, get_peft_model

            from adaptloop.train.finetune import lora_targets

            model = get_peft_model(model, LoraConfig(
                task_type=TaskType.TOKEN_CLS, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.1,
                target_modules=lora_targets(model)))
        freeze_large_vocabulary(model)
        model.to(device)

        w = windows(tok, [e.text for e in train], cfg.max_length, cfg.stride, case=case)
        gold = _spans(train)
        ids, kinds = w["input_ids"], w["types"]
        labels = [align_labels(off, gold[t], types) for off, t in zip(w["offsets"], w["text"])]
        head = [p for n, p in model.named_parameters() if p.requires_grad and "classifier" in n]
        body = [p for n, p in model.named_parameters() if p.requires_grad and "classifier" not in n]
        opt = torch.optim.AdamW([{"params": body, "lr": cfg.lr}, {"params": head, "lr": cfg.head_lr}],
                                weight_decay=cfg.weight_decay)
        weight_o = o_weight(labels) if cfg.o_weight is None else cfg.o_weight
        tag_weight = torch.tensor([weight_o] + [1.0] * (len(names) - 1), device=device)
        steps_per_epoch = max(1, math.ceil(len(ids) / cfg.batch_size))
        # dev checks: every epoch, but at least every 25 updates on small data
        plan = UpdatePlan(opt, total=max(int(cfg.epochs * steps_per_epoch), cfg.min_steps),
                          steps_per_epoch=steps_per_epoch, ctx=ctx, warmup=cfg.warmup,
                          eval_every=max(1, min(25, steps_per_epoch // cfg.evals_per_epoch)) if dev else 10**9,
                          # no gain for a whole epoch (and min_steps / 2) before stopping: a tagger can
                          # sit near F1 0 for a while before it leaves the all-O start (measured on WNUT
                          # with entity-free negatives added: stopped at F1 0.004 after 75 updates)
                          patience=cfg.patience, min_gap=max(cfg.min_steps // 2, steps_per_epoch), floor=0.0,
                          eval_seconds=lambda per_step: per_step * max(1, len(dev)) / cfg.batch_size / 3,
                          score_key="dev_f1")
        tagger = SpanTagger(types, pipeline.encoder, model, tok, max_length=cfg.max_length, stride=cfg.stride,
                            case=case)
        bar = ctx.progress("tagger" + (" (LoRA)" if self.lora else ""), plan.total)
        while not plan.stop:
            for batch in length_batches([len(x) for x in ids], cfg.batch_size, rng):
                model.train()
                enc = tagger.inputs([ids[i] for i in batch], [kinds[i] for i in batch] if case else None)
                width = enc["input_ids"].shape[1]
                y = torch.tensor([labels[i] + [-100] * (width - len(labels[i])) for i in batch]).to(device)
                with cuda_bf16(device):
                    out = model(**{k: v.to(device) for k, v in enc.items()})
                    loss = torch.nn.functional.cross_entropy(out.logits.reshape(-1, len(names)), y.reshape(-1),
                                                             ignore_index=-100, weight=tag_weight)
                loss.backward()
                mask = y != -100
                bar(1)
                if plan.after_step(body + head, opt, loss, score=lambda: dev_f1(tagger, dev), state=model.state_dict,
                                   hits=int((out.logits.detach().argmax(-1)[mask] == y[mask]).sum()),
                                   seen=int(mask.sum())):
                    break
        if plan.best_state is not None:
            model.load_state_dict(plan.best_state)
        if self.lora:
            model = model.merge_and_unload()
        model.eval()
        tagger = SpanTagger(types, pipeline.encoder, model.cpu(), tok, max_length=cfg.max_length,
                            stride=cfg.stride, case=case)
        return tagger, NodeResult(dev_metrics={"f1": max(plan.best_score, 0.0)},
                                  train_seconds=time.monotonic() - t0, curve=plan.curve, notes=plan.notes(),
                                  chosen=plan.chosen())
