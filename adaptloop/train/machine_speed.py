"""What this machine does with each encoder per second: measured in a run's first seconds, cached.

The search prices every pipeline before it starts one (``agent/doctrine.cost``): seconds per
training step, texts a second embedded. Those depend on the machine (cores, their instruction
set, a GPU), on the encoder and on how long the task's texts are, so they are measured here
rather than assumed: each encoder of the ladder embeds a few dozen of the task's texts and takes
three optimizer steps on them (two batch sizes tell a step's fixed part, the optimizer's update
of every weight, from its part per token). The results are kept per token, so a task with
longer texts reuses them, in ``$ADAPTLOOP_CACHE/speeds.json`` under a key naming the machine
(CPU model, core count, torch version, device, threads): the first run on a machine pays for
them once (a few seconds for MiniLM, about 15 s for mpnet-base on 2 cores), later runs read them.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from adaptloop.errors import AdaptloopError
from adaptloop.train.packaged import cache_dir

EMBED_TEXTS = 64  # texts timed for the forward pass (after a warm-up batch)
STEP_BATCHES = (4, 16)  # texts in the two timed training steps (after a warm-up step)
FILLER = "a short customer message about an account, a card or a payment"  # when a task has no texts


@dataclass(frozen=True)
class EncoderSpeed:
    """One encoder on one machine: forward tokens a second, and a training step's seconds per token."""

    encoder: str
    tokens_per_second: float  # inference, padded tokens (batches of similar length)
    step_seconds_per_token: float  # a training step (forward, backward, AdamW): per padded token of the batch
    step_seconds_fixed: float = 0.0  # and once per step, whatever the batch (the optimizer's update)
    key: str = ""  # the machine it was measured on

    def texts_per_second(self, tokens_per_text: float) -> float:
        return self.tokens_per_second / max(tokens_per_text, 1.0)

    def step_seconds(self, batch: int, tokens_per_text: float) -> float:
        return self.step_seconds_fixed + self.step_seconds_per_token * batch * max(tokens_per_text, 1.0)


def machine_key(device: str, threads: int) -> str:
    """What the numbers hold for: CPU model, cores, torch version, device, threads."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}|{os.cpu_count()} cores|torch {torch.__version__}|{device}|{threads} threads"


def _cache_file() -> Path:
    return cache_dir() / "speeds.json"


def _read_cache() -> dict[str, dict]:
    try:
        return json.loads(_cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: measure again


def _write_cache(cache: dict[str, dict]) -> None:
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True), encoding="utf-8")
        tmp.replace(path)  # atomic: two runs measuring at once each leave a whole file
    except OSError:
        pass  # a read-only home: measured again next time, nothing lost


def padded_tokens(encoder: str, texts: Sequence[str], batch: int = 32) -> float:
    """Mean tokens per text as batches of similar length pad them (the unit the speeds are kept in)."""
    from transformers import AutoTokenizer

    from adaptloop.train.encoder import MAX_LENGTH, padding_chunks, resolve_encoder

    texts = [t for t in texts if t] or [FILLER]
    tok = AutoTokenizer.from_pretrained(resolve_encoder(encoder))
    lengths = [len(ids) for ids in tok(list(texts), truncation=True, max_length=MAX_LENGTH)["input_ids"]]
    padded = sum(len(c) * max(lengths[i] for i in c) for c in padding_chunks(lengths, batch))
    return padded / len(texts)


def measure(encoder: str, texts: Sequence[str], *, device: str = "cpu", threads: int = 0) -> EncoderSpeed:
    """Time ``encoder`` on ``texts`` (cycled to the sizes needed): forward passes, then training steps."""
    import torch

    from adaptloop.train.encoder import MAX_LENGTH, freeze_large_vocabulary, load_base, mean_pool, padding_chunks

    texts = [t for t in texts if t] or [FILLER]
    sample = [texts[i % len(texts)] for i in range(EMBED_TEXTS)]
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        tok, shared = load_base(encoder)
        model = copy.deepcopy(shared).to(device)  # load_base's copy is shared: the steps below must not touch it

        def batch(part: Sequence[str]):
            return tok(list(part), padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt").to(device)

        model.eval()
        with torch.inference_mode():
            model(**batch(sample[:8]))  # warm-up: first-call allocations
            tokens, t0 = 0, time.perf_counter()
            for idx in padding_chunks([len(t) for t in sample[:EMBED_TEXTS]], 32):
                b = batch([sample[i] for i in idx])
                model(**b)
                tokens += b["input_ids"].numel()
            forward = tokens / (time.perf_counter() - t0)
        model.train()
        freeze_large_vocabulary(model)  # as the trainers do
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)

        def step(part: Sequence[str]) -> tuple[int, float]:
            b = batch(part)
            t0 = time.perf_counter()
            out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
            mean_pool(out.last_hidden_state, b["attention_mask"]).sum().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return b["input_ids"].numel(), time.perf_counter() - t0

        step(sample[:STEP_BATCHES[0]])  # warm-up: the optimizer's state is allocated here
        # a step costs a fixed part (the optimizer over every weight) and a part per token: two batch
        # sizes tell them apart
        (small, t_small), (large, t_large) = (step(sample[:n]) for n in STEP_BATCHES)
        per_token = (t_large - t_small) / (large - small) if large > small and t_large > t_small else t_large / large
        fixed = max(0.0, t_small - per_token * small)
    finally:
        torch.set_num_threads(before)
    return EncoderSpeed(encoder, round(forward, 1), per_token, fixed, machine_key(device, threads or before))


def encoder_speeds(encoders: Sequence[str], texts: Sequence[str], *, device: str = "cpu",
                   threads: int = 0) -> dict[str, EncoderSpeed]:
    """Each encoder's speed on this machine: from the cache when it was measured here before, else
    measured now on ``texts`` and cached. An encoder that fails to load is left out (its cost stays
    the doctrine's default)."""
    import torch

    key = machine_key(device, threads or torch.get_num_threads())
    cache, out, fresh = _read_cache(), {}, False
    for enc in encoders:
        hit = cache.get(f"{key}|{enc}")
        if hit is not None:
            out[enc] = EncoderSpeed(**hit)
            continue
        try:
            out[enc] = measure(enc, texts, device=device, threads=threads)
        except (AdaptloopError, OSError, ValueError, RuntimeError):
            continue
        cache[f"{key}|{enc}"] = asdict(out[enc])
        fresh = True
    if fresh:
        _write_cache(cache)
    return out
