"""Racing promotions: processes that each promote a different version over the same production, at the
same moment, on SQLite and on PostgreSQL. The alias moves by compare-and-set: exactly one applies, the
others are refused with a conflict and change nothing; every event is kept."""

from __future__ import annotations

import multiprocessing as mp

from sqlalchemy import select

from adaptloop.evaluate.gate import first_model
from adaptloop.store import registry
from adaptloop.store.db import Node, RegistryEvent, Run, Store, Task

RACERS = 6


def _promote(url: str, version: int, incumbent: int, barrier, results) -> None:
    from adaptloop.errors import PromotionConflict

    store = Store(url)
    gate = first_model("accuracy", "e", 10, 0.9, baseline=0.5, predicts="always 'a'")
    barrier.wait()
    try:
        registry.promote(store, version, gate, f"racer v{version}", replacing=incumbent)
        results.put(("applied", version))
    except PromotionConflict as exc:
        results.put(("refused", str(exc)))


def test_racing_promotions_apply_exactly_one(store_url):
    store = Store(store_url)
    task = store.add(Task(name="t", prompt="p", family="classification", spec={}))
    run = store.add(Run(task_id=task.id, budget_s=1))
    node = store.add(Node(run_id=run.id, name="n", intervention="i", reason="r", pipeline={}))
    versions = [registry.register(store, task_id=task.id, node_id=node.id, artifact=f"a{i}", metrics={},
                                  lineage={}, reason="r").id for i in range(RACERS + 1)]
    registry.force_promote(store, versions[0], who="tests", why="the incumbent")
    store.engine.dispose()
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(RACERS), ctx.Queue()
    procs = [ctx.Process(target=_promote, args=(store_url, v, versions[0], barrier, results)) for v in versions[1:]]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    applied = [v for kind, v in outcomes if kind == "applied"]
    refused = [why for kind, why in outcomes if kind == "refused"]
    print(f"{store_url.split(':')[0]}: {len(outcomes)} attempted, {len(applied)} applied, {len(refused)} refused")
    assert len(applied) == 1 and len(refused) == RACERS - 1
    assert all("nothing was changed" in why for why in refused)
    again = Store(store_url)
    assert registry.alias_target(again, "production") == applied[0]
    moves = again.all(select(RegistryEvent).where(RegistryEvent.alias == "production"))
    assert [e.event for e in moves] == ["forced", "promoted"]
