"""The two ways into the loop as a user starts them: ``start_new`` (read the data, pick the family,
run the cold start, or resume one) and ``improve_cycles`` (import traces, wait for failures, run a
cycle). Free of any rendering: what to show comes in as callbacks, so the CLI only parses and renders.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from adaptloop.agent.budget import parse_budget
from adaptloop.agent.coldstart import ColdStart, cold_start, export_reserve, resumable_run, serving_reserve
from adaptloop.agent.distill import fit_to_serving
from adaptloop.agent.export import export_production
from adaptloop.agent.improve import ImproveCycle
from adaptloop.agent.synthesize import draft_task
from adaptloop.agent.traffic import import_traces, new_failures
from adaptloop.data.generation import LoadedSamples, load_generation
from adaptloop.data.llm import ReplayClient
from adaptloop.data.sources import Loaded, family_for, load_for
from adaptloop.data.spec import infer_extraction_spec, infer_spec
from adaptloop.errors import AdaptloopError, NotFoundError
from adaptloop.store.db import LLMCall, Run
from adaptloop.workspace import Workspace

__all__ = ["improve_cycles", "start_new"]

Progress = Callable[[str, int | None], Callable[[int], None]]
ProgressScope = Callable[[], AbstractContextManager[Progress]]


def start_new(ws: Workspace, prompt: str | None, data: Path | None, eval_data: Path | None, budget: str | None,
              *, resume: bool, progress: ProgressScope, on_loaded: Callable[[Loaded | LoadedSamples], None],
              on_spec: Callable[[dict[str, Any]], None], replay: int | None = None,
              on_draft: Callable[[dict[str, Any]], bool] = lambda _: True,
              on_note: Callable[[str], None] = lambda _: None) -> tuple[str, dict[str, Any]]:
    """`adaptloop new`: resume the last interrupted run, or load ``data`` (and the gold ``eval_data``) and
    run a cold start within ``budget`` (every task family through the same loop).

    ``replay``: the LLM planner answers from run ``replay``'s stored requests, with no endpoint.
    ``on_loaded`` sees each loaded file (its quarantined lines), ``on_spec`` the task read from the prompt
    and the data, both before the search starts; ``progress()`` opens the progress bars of the search.
    With no ``data`` the task is drafted from the prompt (``agent.synthesize``): ``on_draft`` sees the drafted
    spec before any data is written and accepts it (True) or not; ``on_note`` sees what the drafter does.

    Returns:
        ``("generation" | "search", the result as a dict)``.
    """
    if resume:
        run_id = resumable_run(ws, parse_budget(budget, minimum=0) if budget else None)
        with progress() as bars:
            result = ColdStart(ws, run_id, progress=bars).run()
        return ("generation" if result.spec.family == "generation" else "search"), result.to_dict()
    if not prompt:
        raise AdaptloopError("`new` needs a PROMPT (and --data FILE, or a task it can draft; or --resume); see "
                             "`adaptloop new --help`")
    seconds = parse_budget(budget or ws.settings.agent.budget)
    draft = None
    if data is None:
        draft = draft_task(ws, prompt, confirm=on_draft, on_progress=on_note)
        on_note(f"drafted data in {draft.train.parent}: {draft.counts}")
        data, eval_data = draft.train, eval_data or draft.eval
    if draft is None and family_for(data, prompt) == "generation":
        samples = load_generation(data)
        on_loaded(samples)
        with progress() as bars:
            return "generation", cold_start(ws, samples, prompt, seconds, progress=bars).to_dict()
    loaded = load_for(data, prompt, family=draft.family if draft else None)
    if draft is not None:
        loaded = dataclasses.replace(loaded, definitions=draft.definitions, edge_cases=draft.edge_cases)
    gold = load_for(eval_data, family=loaded.family) if eval_data is not None else None
    for part in (loaded, gold):
        if part is not None:
            on_loaded(part)
    infer = infer_extraction_spec if loaded.family == "extraction" else infer_spec
    on_spec(infer(prompt, loaded.examples, source=str(data)).to_dict())
    llm = replay_client(ws, replay) if replay is not None else None
    with progress() as bars:
        t0 = time.monotonic()
        result = cold_start(ws, loaded, prompt, seconds, progress=bars, gold=gold, llm=llm)
        # the student (of a winner too slow to serve) spends what the search left of the budget but the
        # export's share: at least what the search kept back for it
        left = max(seconds - (time.monotonic() - t0) - export_reserve(ws, loaded.family, seconds),
                   serving_reserve(ws, seconds))
        sized = fit_to_serving(ws, budget_s=left, progress=bars) if result.version is not None else None
        exported = (export_production(ws, seconds_left=seconds - (time.monotonic() - t0), progress=bars)
                    if result.version is not None else None)
    if draft is not None:  # the drafter's requests belong to the run they made
        ws.store.claim_llm_calls("synth", result.run_id)
    for what in (sized, exported):
        if what is not None:
            on_note(what["reason"])
    return "search", result.to_dict() | ({"serving": sized} if sized is not None else {}) | (
        {"export": exported} if exported is not None else {})


def replay_client(ws: Workspace, run_id: int) -> ReplayClient:
    """The planner's stored answers of run ``run_id``, to re-decide it offline.

    Raises:
        NotFoundError: the run does not exist or asked the LLM planner nothing.
    """
    if ws.store.get(Run, run_id) is None:
        raise NotFoundError(f"no run {run_id} to replay; `adaptloop runs` lists them")
    calls = ws.store.all(select(LLMCall).where(LLMCall.run_id == run_id, LLMCall.role == "planner")
                         .order_by(LLMCall.id))
    if not calls:
        raise NotFoundError(f"run {run_id} asked the LLM planner nothing: there is nothing to replay "
                            "(set [llm] url to plan with an LLM)")
    return ReplayClient([(c.response, c.outcome, c.prompt_tokens, c.completion_tokens) for c in calls], run_id)


def improve_cycles(ws: Workspace, traces_file: Path | None, budget: str | None, *, watch: bool, interval: float,
                   progress: ProgressScope, on_import: Callable[[dict[str, Any]], None],
                   on_wait: Callable[[int, int], None], **cycle_options: Any) -> Iterator[dict[str, Any]]:
    """`adaptloop improve`: import ``traces_file`` first (``on_import`` sees what it added), then one
    improve cycle, or (``watch``) a cycle whenever ``[improve] min_failures`` new failures have feedback,
    checking every ``interval`` seconds (``on_wait(failures, needed)`` meanwhile). Yields each cycle's
    result as a dict; ``cycle_options`` go to each ``ImproveCycle`` (the trainer and embedder seams)."""
    seconds = parse_budget(budget or ws.settings.improve.budget)
    if traces_file is not None:
        on_import(import_traces(ws, str(traces_file)))
    while True:
        if watch:
            n = new_failures(ws)
            if n < ws.settings.improve.min_failures:
                on_wait(n, ws.settings.improve.min_failures)
                time.sleep(interval)
                continue
        with progress() as bars:
            result = ImproveCycle(ws, seconds, progress=bars, **cycle_options).run().to_dict()
            if result.get("decision") == "promoted":  # a running server picks the export up when it passes
                exported = export_production(ws, progress=bars)
                if exported is not None:
                    result["export"] = exported
        yield result
        if not watch:
            return
