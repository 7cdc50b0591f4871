"""Where trials run: the executor seam.

A ``Trial`` is everything one node needs, as plain picklable data; ``run_trial`` trains it
from the base model, saves the model and its dev predictions as artifacts and returns a
``TrialOutcome``. Only the search loop writes the database, so worker processes never
contend for it. ``InlineExecutor`` runs trials in this process (tests, one worker),
``LocalExecutor`` in worker processes, ``RayExecutor`` on a Ray cluster.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

from adaptloop.agent.predict import embedding_cache, score_rows
from adaptloop.agent.prepare import recipe_book
from adaptloop.agent.refit import refit, refit_plan
from adaptloop.config import STATE_DIR
from adaptloop.errors import WorkspaceError
from adaptloop.evaluate.metrics import primary
from adaptloop.evaluate.rows import metrics_of
from adaptloop.evaluate.speed import texts_per_second
from adaptloop.store.db import Run
from adaptloop.train import FitContext, load_trained
from adaptloop.train.base import no_report
from adaptloop.train.classifier import detach_embeddings
from adaptloop.types import Pipeline, Progress, no_progress
from adaptloop.workspace import Workspace

log = logging.getLogger(__name__)
NODE_SPEED_TEXTS = 64  # dev texts a node's model scores once to measure its speed (seconds for a base encoder)

@dataclass(frozen=True)
class Trial:
    root: str  # workspace folder
    run_id: int
    node_id: int
    name: str
    pipeline: dict[str, Any]
    deadline: float  # wall clock (time.time()) by which fitting must end
    make_trainer: Callable[[str], Any]
    device: str = "cpu"
    threads: int = 0  # torch threads in a worker process (0: leave as is)
    runner: Callable[[Trial], TrialOutcome] | None = None  # the family's trial (default: train_trial)
    progress: Progress | None = field(default=None, compare=False)  # bars, for a trial run in this process
    store: str | None = None  # the run's store URL (a worker elsewhere need not resolve it the same way)
    checkpoint: float = float("inf")  # wall clock after which a fit still below the run's best node stops


@dataclass
class TrialOutcome:
    node_id: int
    status: str  # done | failed (the pipeline) | crashed (the process running it died)
    error: str = ""
    model_artifact: str | None = None
    predictions_artifact: str | None = None
    dev_metrics: dict[str, Any] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)
    chosen: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    train_seconds: float = 0.0
    texts_per_second: float | None = None  # its model, scoring dev texts in batches (evaluate.speed)


WORKER_DEATHS = frozenset({"BrokenProcessPool", "WorkerCrashedError", "NodeDiedError", "OutOfMemoryError",
                           "LocalRayletDiedError", "ActorDiedError"})  # the process went, not the pipeline


def worker_died(exc: BaseException) -> bool:
    """Whether a trial's exception says its process died (a pool's or Ray's), not that its code raised."""
    return type(exc).__name__ in WORKER_DEATHS


def run_trial(trial: Trial) -> TrialOutcome:
    """Run one trial with its family's runner (what the executors call)."""
    return (trial.runner or train_trial)(trial)


def limit_threads(threads: int) -> None:
    """torch and BLAS (scikit-learn) share the cores out between workers (0: leave as is)."""
    if threads:
        from threadpoolctl import threadpool_limits

        from adaptloop.train.encoder import set_threads

        set_threads(threads)
        threadpool_limits(threads)


def save_model(ws: Workspace, model: Any, meta: Callable[[Path], None] | None = None) -> str:
    """Save a fitted model as an artifact (``meta`` adds to its folder first); returns its address."""
    staging = ws.artifacts.staging_dir()
    try:
        model.save(staging)
        if meta is not None:
            meta(staging)
        return ws.artifacts.put_dir(staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _live_dir(root: str | Path, run_id: int) -> Path:
    return Path(root) / STATE_DIR / "live" / str(run_id)


def live_score_path(root: str | Path, run_id: int, node_id: int) -> Path:
    """Where a running trial keeps its best dev score so far, for its siblings to compare with."""
    return _live_dir(root, run_id) / str(node_id)


def cutoff_path(root: str | Path, run_id: int) -> Path:
    """Where the search keeps the wall-clock time by which its running trials must end."""
    return _live_dir(root, run_id) / "cutoff"


def _write_whole(path: Path, value: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(repr(float(value)))
    os.replace(tmp, path)


def _read(path: Path, missing: float) -> float:
    try:
        return float(path.read_text())
    except (OSError, ValueError):  # not written yet, or removed
        return missing


def publish_best(root: str | Path, run_id: int, node_id: int, score: float) -> None:
    """A running trial's best dev score so far, written whole (a file, not the store: only the search
    loop writes the database; trials in other processes or on Ray nodes share the workspace folder)."""
    _write_whole(live_score_path(root, run_id, node_id), score)


def publish_cutoff(root: str | Path, run_id: int, wall: float) -> None:
    """The wall-clock time (``time.time()``) by which the search's running trials must end now: a trial's
    deadline is fixed when it starts, the budget the search keeps back (a student's share) may grow later."""
    _write_whole(cutoff_path(root, run_id), wall)


def _live_score(root: str | Path, run_id: int, node_id: int) -> float:
    return _read(live_score_path(root, run_id, node_id), -math.inf)


def best_dev(ws: Workspace, run_id: int, metric: str, *, besides: int | None = None) -> float:
    """The best dev score in the run: its finished nodes' and, so that trials side by side are held to
    each other, the best so far of its other running trials (``besides``: the asking one). Refits,
    trained on dev, aside."""
    best = -math.inf
    for n in ws.store.nodes(run_id):
        if n.pipeline.get("strategy") == "refit":
            continue
        if n.status == "done" and n.dev_metrics:
            best = max(best, primary(n.dev_metrics, metric))
        elif n.status == "running" and n.id != besides:
            best = max(best, _live_score(ws.root, run_id, n.id))
    return best


def train_trial(trial: Trial) -> TrialOutcome:
    """Train, save and score one node of a labelled task (classification, extraction). Failures of
    the pipeline are outcomes, not exceptions."""
    t0 = time.monotonic()
    ws = Workspace.open(Path(trial.root), store=trial.store)
    run = ws.store.get(Run, trial.run_id)
    spec = ws.store.run_state(run).spec
    book = recipe_book(ws, run)
    pipe = Pipeline.from_dict(trial.pipeline)
    limit_threads(trial.threads)
    now, wall = time.monotonic(), time.time()
    ctx = FitContext(deadline=now + (trial.deadline - wall), device=trial.device,
                     embeddings=embedding_cache(trial.root), progress=trial.progress or no_progress,
                     checkpoint=now + (trial.checkpoint - wall),
                     incumbent=lambda: best_dev(ws, trial.run_id, spec.primary_metric, besides=trial.node_id),
                     report=(no_report if pipe.strategy == "refit"  # trained on dev: no honest dev score
                             else lambda score: publish_best(trial.root, trial.run_id, trial.node_id, score)),
                     cutoff=lambda: now + (_read(cutoff_path(trial.root, trial.run_id), math.inf) - wall))
    try:
        if pipe.strategy == "refit":
            plan = refit_plan([n for n in ws.store.nodes(trial.run_id) if n.id != trial.node_id], spec)
            if plan is None:
                raise RuntimeError("nothing to refit")
            keep = None
            if pipe.hparams.get("keep_trained"):
                def keep(node: Any) -> Any:
                    return load_trained(ws.artifacts.path(node.model_artifact), embeddings=ctx.embeddings)
            model, result = refit(plan, spec, book, ctx, trial.make_trainer, keep=keep)
        else:
            model, result = trial.make_trainer(pipe.strategy).fit(spec, pipe, book[pipe.recipe],
                                                                 book["dev"], ctx)
    except (RuntimeError, ValueError) as exc:  # a failed pipeline is a result, not a crash
        log.warning("node %s failed: %s", trial.name, exc)
        return TrialOutcome(trial.node_id, "failed", error=str(exc)[:500],
                            train_seconds=time.monotonic() - t0)
    address = save_model(ws, model)
    out = TrialOutcome(trial.node_id, "done", model_artifact=address, curve=result.curve,
                       chosen=result.chosen, notes=result.notes)
    if pipe.strategy != "refit":  # a refit trained on dev: its dev score would be a lie
        rows = score_rows(model, book["dev"])
        out.dev_metrics = metrics_of(spec, rows)
        out.predictions_artifact = ws.artifacts.put_jsonl(rows)
    out.train_seconds = time.monotonic() - t0
    speed_texts = [e.text for e in book["dev"]]
    if speed_texts:
        out.texts_per_second = model_speed(model, speed_texts)
    return out


def model_speed(model: Any, texts: Sequence[str]) -> float:
    """Texts a second ``model`` scores, as serving will run it: without the embedding cache its fit and
    dev scoring shared, nor the dev probabilities a tagger ensemble's fit kept."""
    if getattr(model, "known_probs", None):
        model.known_probs = {}
    return round(texts_per_second(detach_embeddings(model), texts, limit=NODE_SPEED_TEXTS), 1)


class Executor(Protocol):
    workers: int

    def submit(self, trial: Trial) -> Future: ...

    def shutdown(self) -> None: ...


class InlineExecutor:
    """Runs each trial to completion inside ``submit`` (one at a time, this process)."""

    workers = 1

    def submit(self, trial: Trial) -> Future:
        f: Future = Future()
        try:
            f.set_result(run_trial(trial))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # surfaced by the loop as a failed node
            f.set_exception(exc)
        return f

    def shutdown(self) -> None:
        pass


def _start_worker(env: dict[str, str]) -> None:
    """A worker takes the environment its pool was made in (one forked from the fork server would otherwise
    have the server's) and leaves Ctrl-C to the search loop, which records the interruption and stops it."""
    os.environ.clear()
    os.environ.update(env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def worker_context() -> Any:
    """How worker processes start: forked from a server process that imported this module once
    (``forkserver``), so a pool costs a fork instead of a fresh interpreter importing torch, transformers
    and scikit-learn (6-7 s of CPU a worker on 2 cores, every pool: each run, each improve cycle, each
    pool remade after a worker died). The server imports but never computes: no torch thread pool
    exists to be forked. ``spawn`` where there is no fork."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return get_context("spawn")
    ctx = get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


class LocalExecutor:
    """Trials in ``workers`` local worker processes (``worker_context``: safe with torch threads)."""

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=worker_context(),
                                   initializer=_start_worker, initargs=(dict(os.environ),))

    def submit(self, trial: Trial) -> Future:
        try:
            return self._pool.submit(run_trial, trial)
        except BrokenProcessPool:  # a worker died (killed, out of memory): its trials failed, the rest go on
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(run_trial, trial)

    def shutdown(self) -> None:
        """Stop now: queued trials are cancelled and running ones killed (their nodes are
        already marked by the loop), so no orphan keeps training after an interrupt."""
        for proc in list(getattr(self._pool, "_processes", {}).values()):  # no public API for this
            if proc.is_alive():
                proc.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)


NETWORK_STRATEGIES = frozenset({"frozen", "finetune", "lora", "tagger", "tagger-lora", "frozen-tagger", "zero-shot",
                                "sft", "sft-lora"})  # run a network (a GPU helps); the rest combine fitted models


def trial_resources(trial: Trial, *, cluster_gpus: float, device_setting: str = "auto") -> dict[str, float]:
    """What one trial asks a cluster for, from its pipeline: the CPU threads it was given, and one GPU
    when its strategy runs a network, the cluster has a GPU and ``[train] device`` allows it."""
    gpu = (cluster_gpus >= 1 and device_setting != "cpu"
           and trial.pipeline.get("strategy") in NETWORK_STRATEGIES)
    return {"num_cpus": float(max(1, trial.threads)), "num_gpus": 1.0 if gpu else 0.0}


def _ray_trial(trial: Trial) -> TrialOutcome:
    """A trial in a Ray worker: the workspace must be visible here (a shared file system)."""
    if not Path(trial.root, "adaptloop.toml").is_file():
        import socket

        raise WorkspaceError(f"workspace {trial.root} is not visible on Ray node {socket.gethostname()}; "
                             "put it on a file system every node mounts at the same path")
    return run_trial(trial)


def _ray_errors_to_log() -> None:
    """Ray's driver prints cluster errors ("a worker died") to stdout, where `--json` promises one JSON
    object: send them to this module's log (stderr) instead. The dead worker's trial records it anyway."""
    import ray._private.worker as ray_worker  # no public hook for this

    def to_log(data: dict, ignore_prefix: bool = False) -> None:
        log.warning("ray (%s): %s", data.get("pid", ""), " ".join(map(str, data.get("lines", []))))

    if hasattr(ray_worker, "print_to_stdstream"):
        ray_worker.print_to_stdstream = to_log


class RayExecutor:
    """Trials as Ray tasks on the cluster at ``address`` (``RAY_ADDRESS`` when empty; a local
    cluster when neither is set).

    Each trial asks for the cores it was given and, when its pipeline runs a network and the
    cluster has one, a GPU (Ray then sets ``CUDA_VISIBLE_DEVICES`` and the trial trains on
    ``cuda``). A trial is never retried: a worker that dies fails its node, and the search goes
    on. The workspace folder and the store must be reachable from every Ray node (a shared
    file system, and a PostgreSQL store URL when the nodes are separate machines).
    """

    def __init__(self, workers: int = 2, *, address: str = "", device_setting: str = "auto") -> None:
        try:
            import ray
        except ModuleNotFoundError:
            raise WorkspaceError("search.executor = 'ray' needs Ray: pip install 'ray[default]', "
                                 "or set search.executor = 'local'") from None
        self._ray = ray
        self._owned = not ray.is_initialized()
        if self._owned:
            try:
                ray.init(address=address or None, log_to_driver=False, logging_level=logging.WARNING)
            except ConnectionError as exc:
                raise WorkspaceError(f"cannot reach the Ray cluster at {address or 'RAY_ADDRESS'} ({exc}); "
                                     "start one with `ray start --head`, or fix search.ray_address") from None
        _ray_errors_to_log()
        self.workers = workers
        self.device_setting = device_setting
        self.cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
        self._remote = ray.remote(max_retries=0)(_ray_trial)
        self._refs: list[Any] = []

    def submit(self, trial: Trial) -> Future:
        res = trial_resources(trial, cluster_gpus=self.cluster_gpus, device_setting=self.device_setting)
        trial = replace(trial, progress=None, device="cuda" if res["num_gpus"] else "cpu")
        ref = self._remote.options(name=f"trial {trial.name}", **res).remote(trial)
        self._refs.append(ref)
        return ref.future()

    def shutdown(self) -> None:
        """Cancel what is still running (no orphan trains after an interrupt) and leave the cluster."""
        if self._refs:
            _, pending = self._ray.wait(self._refs, num_returns=len(self._refs), timeout=0)
            for ref in pending:
                self._ray.cancel(ref, force=True)
        self._refs = []
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()


def make_executor(kind: str, workers: int, *, ray_address: str = "", device_setting: str = "auto") -> Executor:
    """The executor named in settings; one local worker runs inline (no process to spawn)."""
    if kind == "ray":
        return RayExecutor(workers, address=ray_address, device_setting=device_setting)
    if workers <= 1:
        return InlineExecutor()
    return LocalExecutor(workers)
