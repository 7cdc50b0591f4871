"""What this machine does with each encoder per second: measured in a run's first seconds, cached.

The search prices every pipeline before it starts one (``agent/doctrine.cost``): seconds per
training step, texts a second embedded. Those depend on the machine (cores, their instruction
set, a GPU), on the encoder and on how long the task's texts are, so they are measured here
rather than assumed: each encoder of the ladder embeds a few dozen of the task's texts and takes
optimizer steps on them at two batch sizes (which tell a step's fixed part, the optimizer's update
of every weight, from its part per token). Each timing is taken ``REPEATS`` times and the fastest
kept: a pause (another process, the OS) only ever adds time. The results are kept per token, so a
task with longer texts reuses them, in ``$ADAPTLOOP_CACHE/speeds.json`` under a key naming the
machine (CPU model, core count, torch version, device, threads): the first run on a machine pays
for them once (a few seconds for MiniLM, about 20 s for mpnet-base on 2 cores), later runs read them.

A measurement taken while other processes held the cores is used by the run that took it (it is
what the machine does now) but never cached. On Linux the CPU time the whole machine spent during
the timings (``/proc/stat``) less this process's own tells how many cores other processes kept busy;
elsewhere the process's CPU time is compared with the timings' wall time × threads. Measured on
2 cores, MiniLM with 2 threads: alone, others kept 0.02 cores busy (the threads 0.99 busy); beside
one busy process 0.7 cores, beside two 1.0 (the threads 0.49 busy), and the step estimates came out
2.5-3.5x slower — a number that, cached, would price every later run on the machine.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from adaptloop.errors import AdaptloopError
from adaptloop.train.packaged import cache_dir

EMBED_TEXTS = 64  # texts timed for the forward pass (after a warm-up batch)
STEP_BATCHES = (8, 32)  # texts in the two timed training steps (after a warm-up step): a tagger's and a
# classifier's batch, so the estimates used interpolate between what was timed
REPEATS = 3  # each timing taken this many times, the fastest kept
OTHERS_MAX = 0.5  # cores other processes may keep busy beyond those the threads leave free (Linux)
CONTENDED = 0.7  # elsewhere: this process's CPU time under this share of the timings' wall time × threads
FILLER = "a short customer message about an account, a card or a payment"  # when a task has no texts


@dataclass(frozen=True)
class EncoderSpeed:
    """One encoder on one machine: forward tokens a second, and a training step's seconds per token."""

    encoder: str
    tokens_per_second: float  # inference, padded tokens (batches of similar length)
    step_seconds_per_token: float  # a training step (forward, backward, AdamW): per padded token of the batch
    step_seconds_fixed: float = 0.0  # and once per step, whatever the batch (the optimizer's update)
    key: str = ""  # the machine it was measured on
    cpu_share: float = 1.0  # CPU time over the timings / (their wall time × threads); 1.0 on a GPU
    others: float | None = None  # cores other processes kept busy meanwhile (None: not known here)
    contended: bool = False  # they held cores the threads needed: right for this run, not for the cache

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


def _busy_seconds() -> float | None:
    """CPU seconds every core of the machine has spent busy since boot (Linux's ``/proc/stat``), else None."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
        # cpu user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait
        ticks = [int(x) for x in fields[1:9]]
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class Clock:
    """Times calls, adding up their wall seconds, this process's CPU seconds and the machine's busy CPU
    seconds (Linux), from which ``others``: the cores other processes kept busy meanwhile."""

    def __init__(self) -> None:
        self.wall = self.own = self.busy = 0.0
        self.machine = _busy_seconds() is not None

    def __call__(self, fn: Callable[[], object]) -> float:
        b0, w0, c0 = _busy_seconds(), time.perf_counter(), time.process_time()
        fn()
        wall = time.perf_counter() - w0
        self.wall += wall
        self.own += time.process_time() - c0
        self.busy += (_busy_seconds() or 0.0) - (b0 or 0.0)
        return wall

    def others(self) -> float | None:
        return max(0.0, self.busy - self.own) / self.wall if self.machine and self.wall > 0 else None

    def share(self, threads: int) -> float:
        return self.own / (self.wall * max(threads, 1)) if self.wall > 0 else 1.0


def contended(share: float, others: float | None, threads: int) -> bool:
    """Whether other processes held cores ``threads`` needed: more than ``OTHERS_MAX`` beyond the cores the
    threads leave free, or (where the machine's CPU time is not known) the threads under ``CONTENDED`` busy."""
    if others is None:
        return share < CONTENDED
    return others > max(0, (os.cpu_count() or 1) - threads) + OTHERS_MAX


@lru_cache(maxsize=8)
def _tokenizer(encoder: str) -> Any:
    """``encoder``'s tokenizer, loaded once a process (0.3 s a load: every run prices two or three rungs)."""
    from transformers import AutoTokenizer

    from adaptloop.train.encoder import resolve_encoder

    return AutoTokenizer.from_pretrained(resolve_encoder(encoder))


def padded_tokens(encoder: str, texts: Sequence[str], batch: int = 32) -> float:
    """Mean tokens per text as batches of similar length pad them (the unit the speeds are kept in)."""
    from adaptloop.train.encoder import MAX_LENGTH, padding_chunks

    texts = [t for t in texts if t] or [FILLER]
    tok = _tokenizer(encoder)
    lengths = [len(ids) for ids in tok(list(texts), truncation=True, max_length=MAX_LENGTH)["input_ids"]]
    padded = sum(len(c) * max(lengths[i] for i in c) for c in padding_chunks(lengths, batch))
    return padded / len(texts)


def measure(encoder: str, texts: Sequence[str], *, device: str = "cpu", threads: int = 0) -> EncoderSpeed:
    """Time ``encoder`` on ``texts`` (cycled to the sizes needed): forward passes, then training steps,
    each ``REPEATS`` times, the fastest kept."""
    import torch

    from adaptloop.train.encoder import MAX_LENGTH, freeze_large_vocabulary, load_base, mean_pool, padding_chunks

    texts = [t for t in texts if t] or [FILLER]
    sample = [texts[i % len(texts)] for i in range(max(EMBED_TEXTS, *STEP_BATCHES))]
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    clock = Clock()

    try:
        tok, shared = load_base(encoder)
        model = copy.deepcopy(shared).to(device)  # load_base's copy is shared: the steps below must not touch it

        def batch(part: Sequence[str]):
            return tok(list(part), padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt").to(device)

        model.eval()
        chunks = [batch([sample[i] for i in idx])
                  for idx in padding_chunks([len(t) for t in sample[:EMBED_TEXTS]], 32)]
        tokens = sum(b["input_ids"].numel() for b in chunks)
        with torch.inference_mode():
            model(**chunks[0])  # warm-up: first-call allocations

            def forward_pass() -> None:
                for b in chunks:
                    model(**b)

            forward = tokens / min(clock(forward_pass) for _ in range(REPEATS))
        model.train()
        freeze_large_vocabulary(model)  # as the trainers do
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)

        def step(b) -> None:
            out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
            mean_pool(out.last_hidden_state, b["attention_mask"]).sum().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        small, large = (batch(sample[:n]) for n in STEP_BATCHES)
        step(small)  # warm-up: the optimizer's state is allocated here
        # a step costs a fixed part (the optimizer over every weight) and a part per token: two batch
        # sizes tell them apart
        t_small = min(clock(lambda: step(small)) for _ in range(REPEATS))
        t_large = min(clock(lambda: step(large)) for _ in range(REPEATS))
        n_small, n_large = small["input_ids"].numel(), large["input_ids"].numel()
        per_token = ((t_large - t_small) / (n_large - n_small) if n_large > n_small and t_large > t_small
                     else t_large / n_large)
        fixed = max(0.0, t_small - per_token * n_small)
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    share, others = (clock.share(used), clock.others()) if device == "cpu" else (1.0, None)
    return EncoderSpeed(encoder, round(forward, 1), per_token, fixed, machine_key(device, threads or before),
                        round(share, 3), None if others is None else round(others, 3),
                        device == "cpu" and contended(share, others, used))


def encoder_speeds(encoders: Sequence[str], texts: Sequence[str], *, device: str = "cpu",
                   threads: int = 0) -> dict[str, EncoderSpeed]:
    """Each encoder's speed on this machine: from the cache when it was measured here before, else
    measured now on ``texts`` and cached unless other processes held the cores meanwhile. An encoder
    that fails to load is left out (its cost stays the doctrine's default)."""
    import torch

    key = machine_key(device, threads or torch.get_num_threads())
    cache, out, fresh = _read_cache(), {}, False
    for enc in encoders:
        hit = cache.get(f"{key}|{enc}")
        if hit is not None and "cpu_share" in hit:  # entries without it predate the contention check
            out[enc] = EncoderSpeed(**hit)
            continue
        try:
            out[enc] = measure(enc, texts, device=device, threads=threads)
        except (AdaptloopError, OSError, ValueError, RuntimeError):
            continue
        if not out[enc].contended:
            cache[f"{key}|{enc}"] = asdict(out[enc])
            fresh = True
    if fresh:
        _write_cache(cache)
    return out
