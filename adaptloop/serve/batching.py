"""Micro-batching: concurrent requests share one forward pass.

Requests put their inputs on a queue and await a future. One task takes the first waiting
request, gathers more until ``max_batch`` inputs or ``max_wait_ms`` have passed, runs the
model once in a worker thread (one at a time: torch already uses every core) and hands each
request its slice. The model is read from ``slot`` when a batch starts, so a hot swap
takes effect on the next batch and the running one finishes on the model it began with.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class MicroBatcher:
    """Batches calls of ``run(model, texts) -> list[output]``.

    Args:
        run: the forward pass (blocking; runs in the worker thread).
        slot: returns the (version, model) to use for the next batch.
        max_batch: inputs per forward pass.
        max_wait_ms: how long the first request of a batch waits for company.
        on_batch: called after each forward pass with (inputs, seconds of the pass, seconds each
            request of the batch waited in the queue before the pass began).
    """

    def __init__(self, run: Callable[[Any, list[str]], list[Any]], slot: Callable[[], tuple[str, Any]], *,
                 max_batch: int = 16, max_wait_ms: float = 5.0,
                 on_batch: Callable[[int, float, list[float]], None] | None = None) -> None:
        self.run, self.slot = run, slot
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self.on_batch = on_batch
        self._q: asyncio.Queue[tuple[list[str], asyncio.Future, float]] | None = None
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="adaptloop-model")

    async def start(self) -> None:
        self._q = asyncio.Queue()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._pool.shutdown(wait=True)

    async def submit(self, texts: Sequence[str]) -> tuple[str, list[Any]]:
        """The (model version, outputs) for ``texts``, computed in some shared batch."""
        assert self._q is not None, "MicroBatcher.start() was not awaited"
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        await self._q.put((list(texts), fut, loop.time()))
        return await fut

    async def call(self, fn: Callable[[Any], Any]) -> tuple[str, Any]:
        """``fn(model)`` on the model thread (one forward at a time), with the version it ran on."""
        version, model = self.slot()
        return version, await asyncio.get_running_loop().run_in_executor(self._pool, fn, model)

    async def _loop(self) -> None:
        assert self._q is not None
        loop = asyncio.get_running_loop()
        while True:
            first = await self._q.get()
            batch = [first]
            n = len(first[0])
            deadline = loop.time() + self.max_wait
            while n < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._q.get(), timeout)
                except asyncio.TimeoutError:
                    break
                batch.append(item)
                n += len(item[0])
            version, model = self.slot()
            texts = [t for ts, _, _ in batch for t in ts]
            started = loop.time()
            queued = [started - at for _, _, at in batch]
            t0 = time.perf_counter()
            try:
                outputs = await loop.run_in_executor(self._pool, self.run, model, texts)
            except Exception as exc:  # hand the failure to every waiting request
                for _, fut, _ in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            if self.on_batch:
                self.on_batch(len(texts), time.perf_counter() - t0, queued)
            i = 0
            for ts, fut, _ in batch:
                if not fut.done():
                    fut.set_result((version, outputs[i:i + len(ts)]))
                i += len(ts)
