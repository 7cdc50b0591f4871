"""Backends (b) and (c): full fine-tune and LoRA of the encoder with a linear head.

Both start from the linear-probe head (LP-FT: a logistic-regression head fitted on frozen
embeddings), so the encoder is never pulled around by a random head. That, mean pooling,
a higher learning rate for the head and length-bucketed batches are why this converges
in one to two epochs where a default ``AutoModelForSequenceClassification`` fine-tune of
the same encoder needs many more. Early stopping and checkpoint selection use the dev
split only; the run ends at ``ctx.deadline`` with the best state kept.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from adaptloop.train.base import FitContext, class_weights, label_ids
from adaptloop.train.classifier import EncoderClassifier
from adaptloop.train.encoder import cuda_bf16, encode_batch, freeze_large_vocabulary, load_base
from adaptloop.train.frozen import _embeddings
from adaptloop.train.logreg import fit_logreg, full_head
from adaptloop.train.loop import UpdatePlan, length_batches
from adaptloop.types import Example, NodeResult, Pipeline, TaskSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FineTuneConfig:
    """Hyperparameters of the fine-tune backends, validated on construction."""

    epochs: float = 2.0  # upper bound; the deadline and early stopping may end sooner
    lr: float = 1e-4  # encoder; MiniLM with an LP-FT head tolerates more than BERT's 2e-5
    head_lr: float = 2e-3  # the head was fitted already; it moves faster than the encoder
    batch_size: int = 32
    warmup: float = 0.06  # share of steps with a rising learning rate
    weight_decay: float = 0.01
    evals_per_epoch: int = 2  # dev checks per epoch; each keeps the best state
    patience: int = 3  # dev checks without gain before stopping (dev is noisy: be patient)
    lora_r: int = 8
    lora_alpha: int = 16
    class_weight: str | dict | None = None  # "balanced" or {label: weight}: re-weights the loss
    pairs: tuple = ()  # confusable label pairs: hard negatives put into every batch
    contrastive: float = 0.0  # weight of the supervised contrastive loss on the pooled embeddings
    temperature: float = 0.1  # of the contrastive loss

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.lr <= 0 or self.head_lr <= 0:
            raise ValueError("epochs, lr and head_lr must be positive")
        if self.batch_size < 1 or self.evals_per_epoch < 1 or self.patience < 1:
            raise ValueError("batch_size, evals_per_epoch and patience must be >= 1")
        if self.contrastive < 0 or self.temperature <= 0:
            raise ValueError("contrastive must be >= 0 and temperature > 0")

    @classmethod
    def from_hparams(cls, hp: dict) -> FineTuneConfig:
        names = set(cls.__dataclass_fields__)
        kw = {k: v for k, v in hp.items() if k in names}
        if "pairs" in kw:
            kw["pairs"] = tuple(tuple(p) for p in kw["pairs"])
        return cls(**kw)


def _with_hard_negatives(batches: list[list[int]], pools: list[tuple[np.ndarray, np.ndarray]], share: float,
                         rng: np.random.Generator) -> list[list[int]]:
    """Replace ``share`` of every batch with examples of one confusable pair (both sides).

    A batch that holds both classes of a pair makes each the other's hard negative in the
    contrastive loss, and the cross-entropy sees the boundary every step.
    """
    if not pools:
        return batches
    out = []
    for b in batches:
        n = max(2, int(len(b) * share)) // 2
        pa, pb = pools[int(rng.integers(len(pools)))]
        extra = np.concatenate([rng.choice(pa, min(n, len(pa)), replace=False),
                                rng.choice(pb, min(n, len(pb)), replace=False)]).tolist()
        taken = set(extra)
        keep = [i for i in b if i not in taken][: max(0, len(b) - len(extra))]
        out.append(keep + extra)
    return out


def lora_targets(model: torch.nn.Module) -> list[str]:
    """The attention query/value projections, whatever the architecture calls them."""
    names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    for pair in (("query", "value"), ("q", "v"), ("q_proj", "v_proj"), ("q_lin", "v_lin")):
        if set(pair) <= names:
            return list(pair)
    raise ValueError("no attention query/value projections found for LoRA; use strategy 'finetune'")


def supervised_contrastive(z: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """SupCon loss (Khosla et al. 2020) over L2-normalised embeddings ``z`` (b, d)."""
    sim = z @ z.T / temperature
    self_mask = torch.eye(len(y), dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, -1e9)
    pos = (y[:, None] == y[None, :]) & ~self_mask
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    has_pos = pos.any(1)
    if not bool(has_pos.any()):
        return z.sum() * 0.0
    mean_pos = (log_prob * pos).sum(1)[has_pos] / pos.sum(1)[has_pos]
    return -mean_pos.mean()


def _dev_accuracy(tok, enc, head, texts, y, device) -> float:
    if not texts:
        return 0.0
    enc.eval()
    order = np.argsort([len(t) for t in texts])
    correct = 0
    with torch.inference_mode(), cuda_bf16(device):
        for s in range(0, len(texts), 128):
            idx = order[s:s + 128]
            logits = head(encode_batch(tok, enc, [texts[i] for i in idx], device))
            correct += int((logits.argmax(-1).cpu().numpy() == y[idx]).sum())
    enc.train()
    return correct / len(texts)


class FineTuneTrainer:
    """Full fine-tune (``lora=False``) or LoRA (``lora=True``) of the encoder."""

    def __init__(self, *, lora: bool = False) -> None:
        self.lora = lora

    def fit(self, spec: TaskSpec, pipeline: Pipeline, train: Sequence[Example],
            dev: Sequence[Example], ctx: FitContext) -> tuple[EncoderClassifier, NodeResult]:
        cfg = FineTuneConfig.from_hparams(pipeline.hparams)
        t0 = time.monotonic()
        torch.manual_seed(pipeline.seed)
        rng = np.random.default_rng(pipeline.seed)
        device = torch.device(ctx.device)
        k = len(spec.labels)
        texts = [e.text for e in train]
        y = label_ids(train, spec.labels)
        dev_texts, y_dev = [e.text for e in dev], label_ids(dev, spec.labels)

        # LP: the head starts as logistic regression on frozen embeddings
        x = _embeddings(ctx, pipeline.encoder, texts, "train")
        cw = class_weights(cfg.class_weight, spec.labels)
        w, b = full_head(fit_logreg(x, y, c=10.0, seed=pipeline.seed, class_weight=cw), k)
        tok, base = load_base(pipeline.encoder)
        enc = copy.deepcopy(base).to(device)
        freeze_large_vocabulary(enc)
        if self.lora:
            from peft import LoraConfig, get_peft_model

            enc = get_peft_model(enc, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                 lora_dropout=0.1,
                                                 target_modules=lora_targets(enc)))
        head = torch.nn.Linear(w.shape[1], k).to(device)
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(w))
            head.bias.copy_(torch.from_numpy(np.maximum(b, -30.0)))
        enc.train()

        weights = None
        if cw == "balanced":
            counts = np.bincount(y, minlength=k).astype(np.float32)
            weights = torch.tensor(np.where(counts > 0, len(y) / (k * np.maximum(counts, 1)), 0.0),
                                   dtype=torch.float32, device=device)
        elif isinstance(cw, dict):
            weights = torch.tensor([cw[i] for i in range(k)], dtype=torch.float32, device=device)
        index = {lab: i for i, lab in enumerate(spec.labels)}
        pools = [(np.flatnonzero(y == index[a]), np.flatnonzero(y == index[b_]))
                 for a, b_ in cfg.pairs if a in index and b_ in index]
        pools = [p for p in pools if len(p[0]) and len(p[1])]
        params = [p for p in enc.parameters() if p.requires_grad]
        opt = torch.optim.AdamW([{"params": params, "lr": cfg.lr},
                                 {"params": head.parameters(), "lr": cfg.head_lr}],
                                weight_decay=cfg.weight_decay)
        steps_per_epoch = max(1, math.ceil(len(texts) / cfg.batch_size))
        # without a dev split (a refit on train+dev) the schedule runs to its end, unchecked
        plan = UpdatePlan(opt, total=int(cfg.epochs * steps_per_epoch), steps_per_epoch=steps_per_epoch, ctx=ctx,
                          warmup=cfg.warmup, patience=cfg.patience, reserve_evals=5,
                          eval_every=max(1, steps_per_epoch // cfg.evals_per_epoch) if dev_texts else 10**9,
                          eval_seconds=lambda per_step: per_step * len(dev_texts) / cfg.batch_size / 3)
        lengths = [len(t) for t in texts]
        plan.start(_dev_accuracy(tok, enc, head, dev_texts, y_dev, device))
        bar = ctx.progress("fine-tune" + (" (LoRA)" if self.lora else ""), plan.total)
        while not plan.stop:
            for batch in _with_hard_negatives(length_batches(lengths, cfg.batch_size, rng), pools,
                                              0.25, rng):
                yb = torch.from_numpy(y[batch]).to(device)
                with cuda_bf16(device):
                    z = encode_batch(tok, enc, [texts[i] for i in batch], device)
                    logits = head(z)
                    loss = torch.nn.functional.cross_entropy(logits, yb, weight=weights)
                    if cfg.contrastive > 0:
                        loss = loss + cfg.contrastive * supervised_contrastive(z.float(), yb, cfg.temperature)
                loss.backward()
                bar(1)
                if plan.after_step(params + list(head.parameters()), opt, loss,
                                   score=lambda: _dev_accuracy(tok, enc, head, dev_texts, y_dev, device),
                                   state=lambda: (enc.state_dict(), head.state_dict()),
                                   hits=int((logits.detach().argmax(-1) == yb).sum()), seen=len(batch)):
                    break
        if plan.best_state is not None:
            enc.load_state_dict(plan.best_state[0])
            head.load_state_dict(plan.best_state[1])
        if self.lora:
            enc = enc.merge_and_unload()
        enc.eval()
        model = EncoderClassifier(spec.labels, pipeline.encoder,
                                  head.weight.detach().cpu().numpy(),
                                  head.bias.detach().cpu().numpy(), enc.cpu(), tok)
        return model, NodeResult(dev_metrics={"accuracy": plan.best_score},
                                 train_seconds=time.monotonic() - t0, curve=plan.curve, notes=plan.notes(),
                                 chosen=plan.chosen())
