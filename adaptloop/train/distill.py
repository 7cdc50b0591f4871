"""A student classifier distilled from a teacher's probabilities: the cheap model to serve.

The student is the default encoder cut to its first ``layers`` transformer layers (a MiniLM-L6
cut to 2 runs about 3x as many texts a second; the embeddings and the first layers keep most of
what a sentence encoder knows) with a linear head, trained on the teacher's soft labels:

- the head starts as logistic regression on the cut encoder's frozen embeddings against the
  teacher's top class (LP-FT, as ``finetune`` does), so the first updates do not tear it apart;
- or, when the teacher holds a fine-tuned member of the default encoder no deeper than the
  student, the student *is* that member to begin with (its encoder and its head), and distillation
  moves it, at a fine-tune's learning rate, from what it learnt alone toward what the teacher
  knows: it starts at the member's accuracy instead of at a pretrained encoder's;
- the loss is the cross-entropy against the teacher's distribution sharpened or softened by a
  temperature (Hinton et al.'s knowledge distillation; the teacher hands over probabilities, so
  its log-probabilities stand in for its logits), mixed with the gold label where a text has one;
- texts without a label (production traffic) count as much as labelled ones: that is what a
  student learns from that its teacher did not;
- the dev score is accuracy on the teacher's dev texts when they carry gold labels (the gate
  judges a student by accuracy, so selection does too), else agreement with the teacher's top
  class, which needs no gold label; the best state is kept and the deadline ends the run.

The result is an ordinary ``EncoderClassifier`` with its encoder included: it saves, loads,
exports to ONNX and serves like every other classifier.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from adaptloop.train.base import FitContext
from adaptloop.train.classifier import EncoderClassifier
from adaptloop.train.encoder import embed, encode_batch, load_base
from adaptloop.train.logreg import fit_logreg, full_head
from adaptloop.train.loop import UpdatePlan, length_batches


@dataclass(frozen=True)
class DistillConfig:
    """How a student is cut and trained; validated on construction."""

    layers: int = 3  # transformer layers the student keeps from the default encoder ([serve] student_layers)
    epochs: float = 10.0  # upper bound; the deadline and early stopping end it sooner (4 epochs on banking77
    # left dev agreement still rising, 0.886 -> 0.942, and the student 0.7 points short of its teacher)
    lr: float = 2e-4  # a cut encoder has lost its top layers: it must move further than a fine-tune
    head_lr: float = 2e-3
    batch_size: int = 32
    temperature: float = 2.0  # softens the teacher's distribution: its second choices teach too
    gold_weight: float = 0.3  # share of the loss on the gold label, where a text has one
    warmup: float = 0.06
    evals_per_epoch: int = 2
    patience: int = 3
    warm_lr: float = 5e-5  # a student that starts from a fine-tuned member is fine-tuned already: half its lr
    warm_head_lr: float = 5e-4

    def __post_init__(self) -> None:
        if self.layers < 1:
            raise ValueError(f"a student keeps at least 1 transformer layer, not {self.layers}")
        if min(self.epochs, self.lr, self.head_lr, self.warm_lr, self.warm_head_lr, self.temperature) <= 0:
            raise ValueError("epochs, the learning rates and temperature must be positive")
        if not 0.0 <= self.gold_weight <= 1.0:
            raise ValueError(f"gold_weight is a share in [0, 1], not {self.gold_weight}")


def cut_layers(encoder: torch.nn.Module, layers: int) -> torch.nn.Module:
    """A copy of ``encoder`` that keeps its first ``layers`` transformer layers (its config says so,
    so the copy saves and reloads as the smaller model). Encoders with fewer layers stay whole.

    Raises:
        ValueError: no layer list found (not a BERT-, MPNet- or RoBERTa-style encoder).
    """
    out = copy.deepcopy(encoder)
    stack = getattr(getattr(out, "encoder", None), "layer", None)
    if not isinstance(stack, torch.nn.ModuleList):
        raise ValueError(f"{type(encoder).__name__} has no encoder.layer list to cut")
    keep = min(layers, len(stack))
    out.encoder.layer = torch.nn.ModuleList(list(stack)[:keep])
    out.config.num_hidden_layers = keep
    return out


def depth(encoder: torch.nn.Module) -> int:
    """Transformer layers ``encoder`` has (0 when its config does not say)."""
    return int(getattr(getattr(encoder, "config", None), "num_hidden_layers", 0) or 0)


def _start_head(start: EncoderClassifier, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``start``'s head with its rows in ``labels`` order."""
    rows = [start.labels.index(lab) for lab in labels]
    return start.weight[rows], start.bias[rows]


def soft_targets(proba: np.ndarray, temperature: float) -> np.ndarray:
    """The teacher's distribution at ``temperature`` (1: as given; above 1: softer)."""
    logp = np.log(np.clip(proba, 1e-9, 1.0)) / temperature
    logp -= logp.max(1, keepdims=True)
    p = np.exp(logp)
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def _hits(tok, enc, head, texts: Sequence[str], want: np.ndarray, device: torch.device) -> float:
    """Share of ``texts`` whose top class is ``want`` (the teacher's: agreement; gold: accuracy)."""
    if not len(texts):
        return 0.0
    z = torch.from_numpy(embed(tok, enc, list(texts), device=device)).to(device)
    with torch.inference_mode():
        got = head(z).argmax(-1).cpu().numpy()
    enc.train()
    return float((got == want).mean())


def distill(labels: Sequence[str], encoder_name: str, texts: Sequence[str], teacher: np.ndarray,
            gold: Sequence[int | None], dev_texts: Sequence[str], dev_teacher: np.ndarray, ctx: FitContext,
            cfg: DistillConfig = DistillConfig(), seed: int = 0,
            dev_gold: Sequence[int | None] = (),
            start: EncoderClassifier | None = None) -> tuple[EncoderClassifier, dict]:
    """Train a student on ``texts`` with the teacher's probabilities ``teacher`` (n, k) and the gold
    label index of each text (None where there is none); ``dev_gold``: the dev texts' gold label
    indices, when every one has one (selection by accuracy, else by agreement); ``start``: a fine-tuned
    classifier over the same labels, at most ``cfg.layers`` deep, to begin from (a copy: it is not
    changed). Returns the student and what the fit did: the dev score it was selected on before and
    after, its dev agreement with the teacher, the curve, the stop reason, seconds.

    Raises:
        ValueError: ``start`` has no fine-tuned encoder, is deeper than ``cfg.layers``, or lacks a label.
    """
    t0 = time.monotonic()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = torch.device(ctx.device)
    k = len(labels)
    if start is not None and (start.encoder is None or not 0 < depth(start.encoder) <= cfg.layers
                              or set(labels) - set(start.labels)):
        raise ValueError(f"a student starts from a fine-tuned classifier of at most {cfg.layers} layers over "
                         "its labels")
    if start is not None:
        tok, enc = start.tokenizer, copy.deepcopy(start.encoder).to(device)
        encoder_name = start.encoder_name
    else:
        tok, base = load_base(encoder_name)
        enc = cut_layers(base, cfg.layers).to(device)
    target = soft_targets(teacher, cfg.temperature)
    top = teacher.argmax(1)
    has_gold = np.array([g is not None for g in gold])
    gold_ids = np.array([g if g is not None else 0 for g in gold], dtype=np.int64)
    dev_top = dev_teacher.argmax(1) if len(dev_texts) else np.zeros(0, dtype=int)
    by_gold = len(dev_gold) == len(dev_texts) > 0 and all(g is not None for g in dev_gold)
    want, key = (np.array(dev_gold, dtype=np.int64), "dev_accuracy") if by_gold else (dev_top, "dev_agreement")

    if start is not None:
        w, b = _start_head(start, labels)
    else:  # LP: the head starts as logistic regression on the cut encoder's embeddings against the teacher's top
        x = embed(tok, enc, list(texts), device=device)
        w, b = full_head(fit_logreg(x, top, c=10.0, seed=seed), k)
    head = torch.nn.Linear(w.shape[1], k).to(device)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(w))
        head.bias.copy_(torch.from_numpy(np.maximum(b, -30.0)))
    enc.train()
    params = [p for p in enc.parameters() if p.requires_grad]
    lr, head_lr = (cfg.warm_lr, cfg.warm_head_lr) if start is not None else (cfg.lr, cfg.head_lr)
    opt = torch.optim.AdamW([{"params": params, "lr": lr}, {"params": head.parameters(), "lr": head_lr}],
                            weight_decay=0.01)
    steps_per_epoch = max(1, math.ceil(len(texts) / cfg.batch_size))
    plan = UpdatePlan(opt, total=int(cfg.epochs * steps_per_epoch), steps_per_epoch=steps_per_epoch, ctx=ctx,
                      warmup=cfg.warmup, patience=cfg.patience, reserve_evals=3, score_key=key,
                      eval_every=max(1, steps_per_epoch // cfg.evals_per_epoch) if len(dev_texts) else 10**9,
                      eval_seconds=lambda per_step: per_step * len(dev_texts) / cfg.batch_size / 3)
    before = _hits(tok, enc, head, dev_texts, want, device)
    plan.start(before)
    layers = depth(enc) or cfg.layers
    begin = " from the teacher's fine-tuned member" if start is not None else ""
    bar = ctx.progress(f"distil a {layers}-layer student{begin}", plan.total)
    lengths = [len(t) for t in texts]
    tt = cfg.temperature
    while not plan.stop:
        for batch in length_batches(lengths, cfg.batch_size, rng):
            logits = head(encode_batch(tok, enc, [texts[i] for i in batch], device))
            soft = torch.from_numpy(target[batch]).to(device)
            # T² keeps the soft term's gradients on the scale of the hard term's (Hinton et al.)
            loss = -(soft * torch.log_softmax(logits / tt, -1)).sum(-1).mean() * tt * tt
            g = torch.from_numpy(has_gold[batch]).to(device)
            if cfg.gold_weight > 0 and bool(g.any()):
                hard = torch.nn.functional.cross_entropy(logits[g], torch.from_numpy(gold_ids[batch]).to(device)[g])
                loss = (1 - cfg.gold_weight) * loss + cfg.gold_weight * hard
            loss.backward()
            bar(1)
            yb = top[batch]
            if plan.after_step(params + list(head.parameters()), opt, loss,
                               score=lambda: _hits(tok, enc, head, dev_texts, want, device),
                               state=lambda: (enc.state_dict(), head.state_dict()),
                               hits=int((logits.detach().argmax(-1).cpu().numpy() == yb).sum()), seen=len(batch)):
                break
    if plan.best_state is not None:
        enc.load_state_dict(plan.best_state[0])
        head.load_state_dict(plan.best_state[1])
    agreement = _hits(tok, enc, head, dev_texts, dev_top, device) if by_gold else plan.best_score
    enc.eval()
    student = EncoderClassifier(labels, encoder_name, head.weight.detach().cpu().numpy(),
                                head.bias.detach().cpu().numpy(), enc.cpu(), tok)
    info = {"layers": layers, "started_from": "member" if start is not None else "pretrained",
            "texts": len(texts), "with_gold": int(has_gold.sum()),
            "selected_on": key, "dev_score_before": round(before, 4), "dev_score": round(plan.best_score, 4),
            "dev_agreement": round(agreement, 4),
            "stop": plan.stop, "steps": plan.step, "curve": plan.curve,
            "seconds": round(time.monotonic() - t0, 1)}
    return student, info
