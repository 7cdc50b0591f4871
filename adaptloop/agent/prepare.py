"""Preparing a cold-start run: validate, freeze the eval set, curate, store every split.

Order matters and is recorded: the eval set is written to the store before any node is
trained; every removal carries its reason. ``recipe_book`` reads a prepared run's data back.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from adaptloop.data import curate
from adaptloop.data.augment import augment
from adaptloop.data.recipes import RecipeBook
from adaptloop.data.sources import Loaded
from adaptloop.data.spec import infer_extraction_spec, infer_spec
from adaptloop.data.split import held_out_split
from adaptloop.diagnose.token_issues import token_label_issues
from adaptloop.errors import AdaptloopError, DataError, LabelError, RunFailed
from adaptloop.store.db import Dataset, EvalSetRow, Node, Quarantine, Removal, Run, Task, utcnow
from adaptloop.train.base import Progress, no_progress
from adaptloop.train.logreg import out_of_fold_proba
from adaptloop.types import EvalSet, Example, RunState, TaskSpec
from adaptloop.workspace import Workspace


def _rows(examples: Sequence[Example]) -> list[dict[str, Any]]:
    return [e.to_dict() for e in examples]


def _examples(ws: Workspace, address: str) -> list[Example]:
    return [Example.from_dict(r) for r in ws.artifacts.get_jsonl(address)]


def eval_sets(ws: Workspace, task_id: int) -> list[tuple[str, list[Example]]]:
    """Every frozen eval set of a task, oldest first, as (id, examples): what a candidate must pass."""
    from sqlalchemy import select

    rows = ws.store.all(select(EvalSetRow).where(EvalSetRow.task_id == task_id).order_by(EvalSetRow.created_at))
    return [(r.id, list(EvalSet.from_dict(ws.artifacts.get_json(r.artifact)).examples)) for r in rows]


def register_node(ws: Workspace, run: Run, node: Node, metrics: dict[str, Any], reason: str) -> Any:
    """Register ``node``'s model as a version of ``run``'s task, with its lineage (run, frozen eval set,
    datasets, pipeline)."""
    from adaptloop.store import registry

    return registry.register(ws.store, task_id=run.task_id, node_id=node.id, artifact=node.model_artifact,
                             metrics=metrics, lineage={"run_id": run.id, "eval_set": run.eval_set_id,
                                                       "datasets": ws.store.run_state(run).datasets,
                                                       "pipeline": node.pipeline}, reason=reason)


def run_eval_set(ws: Workspace, run: Run) -> EvalSet | None:
    """The eval set ``run`` froze before training, or None (it froze none)."""
    row = ws.store.get(EvalSetRow, run.eval_set_id) if run.eval_set_id else None
    return EvalSet.from_dict(ws.artifacts.get_json(row.artifact)) if row is not None else None


def _store_dataset(ws: Workspace, task_id: int, role: str, examples: Sequence[Example],
                   source: str = "") -> str:
    address = ws.artifacts.put_jsonl(_rows(examples))
    did = f"{role}:{address[:24]}"
    ws.store.add_once(Dataset(id=did, task_id=task_id, role=role, source=source, artifact=address,
                              n=len(examples)))
    return address


def _record_drops(ws: Workspace, task_id: int, examples: Sequence[Example],
                  drops: Sequence[curate.Drop]) -> None:
    with ws.store.session() as s:
        for d in drops:
            e = examples[d.index]
            s.add(Removal(task_id=task_id, example_id=e.id, text=e.text, label=e.label,
                          reason=d.reason, detail=d.detail))


def prepare(ws: Workspace, loaded: Loaded, prompt: str, budget_s: float, *,
            progress: Progress = no_progress, embed_fn: Callable[[list[str]], np.ndarray] | None = None,
            gold: Loaded | None = None) -> tuple[int, int]:
    """Validate, then write task, datasets, the frozen eval set and curation. Returns ids.

    ``gold``: a separate gold file; the frozen eval set and dev are split from it (half
    each) and nothing of it is trained on. Without it both come from ``loaded``.
    Nothing is written when the data fails validation (``infer_spec`` and ``_check_enough`` raise first);
    a run that fails after that is marked failed (``RunFailed``).
    """
    if gold is not None and gold.family != loaded.family:
        raise DataError(f"{gold.source} holds {gold.family} records but {loaded.source} {loaded.family}; "
                        "the gold file must have the training data's format")
    if loaded.family == "extraction":
        spec = infer_extraction_spec(prompt, loaded.examples, source=loaded.source)
    else:
        spec = infer_spec(prompt, loaded.examples, source=loaded.source)
    if loaded.definitions or loaded.edge_cases:  # a drafted task says what its labels mean
        spec = dataclasses.replace(spec, definitions=dict(loaded.definitions), edge_cases=tuple(loaded.edge_cases))
    _check_enough(spec, loaded, gold)
    task = ws.store.add(Task(name=spec.name, prompt=prompt, family=spec.family,
                             spec=spec.to_dict()))
    run = ws.store.add(Run(task_id=task.id, kind="coldstart", budget_s=budget_s, state={}))
    try:
        _prepare_run(ws, task, run, spec, loaded, gold, progress, embed_fn)
    except Exception as exc:  # no run is left "running" with half its data
        fail_run(ws.store, run.id, exc)
        if isinstance(exc, AdaptloopError):
            raise
        raise RunFailed(run.id, exc) from exc
    return task.id, run.id


def _prepare_run(ws: Workspace, task: Task, run: Run, spec: TaskSpec, loaded: Loaded, gold: Loaded | None,
                 progress: Progress, embed_fn: Callable[[list[str]], np.ndarray] | None) -> None:
    """Quarantine, curation, the frozen eval set, dev and the label issues of a new run; its state."""
    settings = ws.settings
    for part in (loaded, gold) if gold is not None else (loaded,):
        with ws.store.session() as s:
            for q in part.quarantined:
                s.add(Quarantine(source=part.source, line_no=q.line_no, raw=q.raw, reason=q.reason))
        if part.quarantined:
            ws.store.decide(run.id, "quarantine", f"{len(part.quarantined)} malformed lines "
                            f"quarantined from {part.source}")
    source = list(loaded.examples)
    _store_dataset(ws, task.id, "source", source, loaded.source)

    # 1. exact duplicates over everything, so no copy can straddle eval and train
    drops = curate.find_exact_duplicates(source)
    _record_drops(ws, task.id, source, drops)
    deduped = curate.apply_drops(source, drops)

    # 2. the eval set, frozen before any training
    seed = settings.train.seed
    held, gold_dev, pool, eval_address = _freeze_eval_set(ws, task.id, run.id, deduped, gold)

    # 3. decontaminate the pool against the eval set, then near-duplicates within it
    bar = progress("decontaminate", 2)
    drops = curate.find_eval_overlap(pool, held + (gold_dev or []))
    _record_drops(ws, task.id, pool, drops)
    pool = curate.apply_drops(pool, drops)
    bar(1)
    near = curate.find_near_duplicates(pool)
    _record_drops(ws, task.id, pool, near)
    pool = curate.apply_drops(pool, near)
    bar(1)

    # 4. dev split from the pool (never from the eval set)
    if gold_dev is not None:
        dev, train, dev_how = gold_dev, pool, "given"
    else:
        dev, train, dev_how = held_out_split(pool, fraction=settings.agent.dev_fraction, seed=seed + 1,
                                          by_mention=settings.agent.unseen_mentions)

    # 5. label issues on out-of-fold probabilities of the cheapest backend
    issue_rows, issues = _label_issues(ws, spec, train, embed_fn, progress)
    _record_drops(ws, task.id, train, issues)
    curated, n_issues = curate.apply_drops(train, issues), len(issues)
    balance = curate.class_balance(train)
    state = RunState(
        spec=spec,
        datasets={
            "raw": _store_dataset(ws, task.id, "train", train),
            "curated": _store_dataset(ws, task.id, "curated", curated),
            **({} if spec.family == "extraction" else
               {"augmented": _store_dataset(ws, task.id, "augmented", augment(train, seed=seed))}),
            "dev": _store_dataset(ws, task.id, "dev", dev),
        },
        eval_artifact=eval_address,
        label_issues=tuple(issue_rows),
        curation={
            "source": len(source), "exact_or_conflicting_duplicates": len(source) - len(deduped),
            "eval": len(held), "eval_overlap": len(drops), "near_duplicates": len(near),
            "dev": len(dev), "train": len(train), "label_issues": n_issues,
            "balance": {k: v for k, v in balance.items() if k != "counts"},
        },
    )
    ws.store.save_state(run.id, state)
    ws.store.decide(run.id, "curation", "removed duplicates, eval overlap and label issues; dev: "
                    f"{len(dev)} examples, {_DEV_HOW[dev_how]}", dev_split=dev_how, **state.curation)


_DEV_HOW = {"given": "half of the held-out data given with the task (the other half is the eval set)",
            "group": "whole groups by the records' group field, as the eval set",
            "mention": "whole groups of rows that share an entity mention, unseen in training, as the eval set",
            "stratified": "stratified by class"}

MIN_PER_CLASS = 3  # one example for the frozen eval set, one for dev, one to train on
MIN_EXAMPLES = 3  # extraction: sentences, one for each of the same three parts


def _check_enough(spec: TaskSpec, loaded: Loaded, gold: Loaded | None) -> None:
    """Refuse data too small to hold out an eval set and a dev split and still train, before anything
    is written; and a gold file with labels the training data lacks.

    Raises:
        DataError: not enough examples.
        LabelError: the gold file has labels (entity types) the training data does not.
    """
    if gold is not None:
        found = ({s[2] for e in gold.examples for s in e.spans} if spec.family == "extraction"
                 else {e.label for e in gold.examples})
        unknown = sorted(found - set(spec.labels))
        if unknown:
            raise LabelError(f"{gold.source} has {len(unknown)} label(s) the training data lacks "
                             f"({', '.join(unknown[:5])}); the model could never predict them — add training "
                             "examples for them or remove them from the gold file")
        if len(gold.examples) < 2:
            raise DataError(f"{gold.source} has {len(gold.examples)} usable example(s); the gold file gives the eval "
                            "set and dev half each: it needs at least 2")
        return
    if spec.family == "extraction":
        if len(loaded.examples) < MIN_EXAMPLES:
            raise DataError(f"{loaded.source} has {len(loaded.examples)} usable sentences; at least {MIN_EXAMPLES} "
                            "are needed to hold out an eval set and a dev split and still train — add data")
        return
    counts = Counter(e.label for e in loaded.examples)
    enough = [lab for lab, n in counts.items() if n >= MIN_PER_CLASS]
    if len(enough) < 2:
        small = ", ".join(f"'{lab}' ({n})" for lab, n in sorted(counts.items(), key=lambda kv: kv[1])[:3])
        raise DataError(f"{loaded.source}: {len(enough)} of {len(counts)} classes have the {MIN_PER_CLASS} examples "
                        f"a class needs (one for the frozen eval set, one for dev, one to train on); smallest: "
                        f"{small}; add examples")


def fail_run(store: Any, run_id: int, exc: BaseException, *, nodes: Sequence[int] = (),
             spent_s: float | None = None) -> None:
    """Mark a run (and its unfinished nodes) failed with the error, so that no run is left "running"."""
    error = f"{type(exc).__name__}: {exc}"[:500]
    for node_id in nodes:
        store.update(Node, node_id, status="failed", finished_at=utcnow(), eval_metrics={"error": error})
    fields = {"status": "failed", "finished_at": utcnow()} | ({"spent_s": spent_s} if spent_s is not None else {})
    store.update(Run, run_id, **fields)
    store.decide(run_id, "failed", f"stopped by an error: {error}; nothing was promoted", error=error)


def _freeze_eval_set(ws: Workspace, task_id: int, run_id: int, deduped: list[Example],
                     gold: Loaded | None) -> tuple[list[Example], list[Example] | None, list[Example], str]:
    """Hold out the eval set (from ``gold`` when given: half eval, half dev) and freeze it before any
    training. Returns (eval examples, gold dev or None, the pool left to train on, its address)."""
    settings, seed = ws.settings, ws.settings.train.seed
    gold_dev: list[Example] | None = None
    if gold is not None:
        g = list(gold.examples)
        g = curate.apply_drops(g, curate.find_exact_duplicates(g))
        held, gold_dev, how = held_out_split(g, fraction=0.5, seed=seed, by_mention=settings.agent.unseen_mentions)
        pool, split_from = deduped, g
    else:
        held, pool, how = held_out_split(deduped, fraction=settings.agent.eval_fraction, seed=seed,
                                         max_n=settings.agent.eval_max, by_mention=settings.agent.unseen_mentions)
        split_from = deduped
    eval_set = EvalSet(tuple(held))
    eval_address = ws.artifacts.put_json(eval_set.to_dict())
    ws.store.add_once(EvalSetRow(id=eval_set.id, task_id=task_id, artifact=eval_address,
                                 n=len(held), report=curate.class_balance(held)))
    ws.store.update(Run, run_id, eval_set_id=eval_set.id)
    if how == "group":
        how_held = (f"whole groups ({len({e.group for e in held})} of {len({e.group for e in split_from})}, "
                    "by the records' group field): it measures unseen groups, not copies of training ones")
    elif how == "mention":
        how_held = ("whole groups of rows that share an entity mention: no mention it holds occurs in the rows "
                    "left to train on, so it measures names the model has not seen, as production brings")
    else:
        how_held = f"stratified over {len(set(e.label for e in held))} classes"
    ws.store.decide(run_id, "eval_set_frozen", f"eval set {eval_set.id}: {len(held)} examples, {how_held}, "
                    "frozen before any training", split=how)
    return held, gold_dev, pool, eval_address


def _label_issues(ws: Workspace, spec: TaskSpec, train: list[Example],
                  embed_fn: Callable[[list[str]], np.ndarray] | None,
                  progress: Progress) -> tuple[list[dict[str, Any]], list[curate.Drop]]:
    """Training examples whose label the data doubts (cleanlab on out-of-fold probabilities of the
    cheapest backend; per token for extraction), as rows (id, label, suggested) and as drops."""
    seed = ws.settings.train.seed
    if embed_fn is None or len(train) < 20:
        return [], []
    if spec.family == "extraction":
        rows, flagged = token_label_issues(train, spec.labels, ws.settings.train.encoder, seed=seed,
                                           progress=progress)
        return rows, [curate.Drop(i, "label_issue", f"{k} token(s) flagged by cleanlab")
                      for i, k in sorted(flagged.items())]
    x = embed_fn([e.text for e in train])
    y = np.array([spec.labels.index(e.label) for e in train])
    probs = out_of_fold_proba(x, y, len(spec.labels), seed=seed, progress=progress("cleanlab (out-of-fold)", 5))
    issues = curate.find_label_issues(y, probs)
    rows = [{"id": train[d.index].id, "label": train[d.index].label,
             "suggested": spec.labels[int(probs[d.index].argmax())]} for d in issues]
    return rows, issues


def recipe_book(ws: Workspace, run: Run) -> RecipeBook:
    """The run's training data, with every recipe materialised on demand."""
    state = ws.store.run_state(run)
    ds = state.datasets
    raw, dev = _examples(ws, ds["raw"]), _examples(ws, ds["dev"])
    if state.label_issues is not None:
        issue_ids = {r["id"] for r in state.label_issues}
    else:  # a run prepared before label issues were kept with their suggested label
        kept = {e.id for e in _examples(ws, ds["curated"])}
        issue_ids = {e.id for e in raw if e.id not in kept}
    return RecipeBook(raw, dev, issue_ids, seed=ws.settings.train.seed, family=state.spec.family)
