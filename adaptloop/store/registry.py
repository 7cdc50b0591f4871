"""Model versions and aliases, as append-only events over the store."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from adaptloop.errors import NotFoundError, PromotionConflict
from adaptloop.store.db import ModelVersionRow, RegistryEvent, Store
from adaptloop.types import GateResult


def register(store: Store, *, task_id: int, node_id: int, artifact: str,
             metrics: dict[str, Any], lineage: dict[str, Any], reason: str) -> ModelVersionRow:
    """Add a model version and its ``registered`` event."""
    with store.session() as s:
        mv = ModelVersionRow(task_id=task_id, node_id=node_id, artifact=artifact,
                             metrics=metrics, lineage=lineage)
        s.add(mv)
        s.flush()
        s.add(RegistryEvent(version_id=mv.id, event="registered", alias=None, reason=reason))
    return mv


_ANY = object()  # a move that does not depend on where the alias points now


def _event(store: Store, version_id: int, event: str, *, alias: str | None, reason: str,
           data: dict[str, Any] | None = None, expected: Any = _ANY) -> None:
    """Append an event; one that moves ``alias`` is a compare-and-set (``expected``: the version the alias
    must still point at, None for "at nothing"; a move without it retries past concurrent ones).

    Raises:
        PromotionConflict: the alias no longer points at ``expected``.
    """
    if store.get(ModelVersionRow, version_id) is None:
        raise NotFoundError(f"model version v{version_id} does not exist; see `adaptloop models`")
    payload = json.loads(json.dumps(data)) if data is not None else None
    if alias is None:
        store.add(RegistryEvent(version_id=version_id, event=event, alias=None, reason=reason, data=payload))
        return
    for _attempt in range(20):
        try:
            with store.session() as s:
                moves = s.scalar(select(func.count()).select_from(RegistryEvent).where(RegistryEvent.alias == alias))
                last = s.scalar(select(RegistryEvent.version_id).where(RegistryEvent.alias == alias)
                                .order_by(RegistryEvent.id.desc()).limit(1))
                if expected is not _ANY and last != expected:
                    raise PromotionConflict(f"'{alias}' moved to v{last} while v{version_id} was being decided "
                                            f"(it pointed at v{expected}); nothing was changed")
                s.add(RegistryEvent(version_id=version_id, event=event, alias=alias, alias_seq=moves + 1,
                                    reason=reason, data=payload))
            return
        except (IntegrityError, OperationalError) as exc:  # another move took this sequence number first
            if isinstance(exc, OperationalError) and "locked" not in str(exc):
                raise  # not SQLite's busy writer: a real database error
            if expected is not _ANY:
                raise PromotionConflict(f"another process moved '{alias}' while v{version_id} was being decided; "
                                        "nothing was changed") from None
            time.sleep(0.05 * (1 + _attempt))
    raise PromotionConflict(f"'{alias}' kept moving; v{version_id} was not set")


def promote(store: Store, version_id: int, gate: GateResult, reason: str, *, replacing: Any = _ANY) -> None:
    """Point ``production`` at a version whose gate passed; the gate is kept with the event.
    ``replacing``: the version the gate compared against; if production moved since, nothing changes.

    Raises:
        ValueError: the gate refused it (an admin's override is ``force_promote``).
        PromotionConflict: production no longer points at ``replacing``.
    """
    if not gate.passed:
        raise ValueError(f"v{version_id} did not pass its gate ({'; '.join(gate.reasons)}); "
                         "only an admin's forced promotion can override a gate")
    _event(store, version_id, "promoted", alias="production", reason=reason, data=gate.to_dict(), expected=replacing)


def refuse(store: Store, version_id: int, reason: str, gate: GateResult | None = None) -> None:
    """Record that a version was not promoted, and why (with the gate, when one decided)."""
    _event(store, version_id, "refused", alias=None, reason=reason,
           data=gate.to_dict() if gate is not None else None)


def nominate(store: Store, version_id: int, reason: str) -> None:
    """Point ``candidate`` at a version: the best of an improve run, before its gate decides."""
    _event(store, version_id, "candidate", alias="candidate", reason=reason)


def force_promote(store: Store, version_id: int, *, who: str, why: str) -> None:
    """An admin's promotion, gate or no gate: its own event, with who and why."""
    _event(store, version_id, "forced", alias="production", reason=why, data={"who": who})


def alias_target(store: Store, alias: str) -> int | None:
    """The version an alias points at now: the last event that set it."""
    rows = store.all(select(RegistryEvent).where(RegistryEvent.alias == alias)
                     .order_by(RegistryEvent.id.desc()).limit(1))
    return rows[0].version_id if rows else None


def resolve(store: Store, ref: str | None) -> ModelVersionRow:
    """A version by ``v3``, ``3`` or an alias name (default ``production``).

    Raises:
        NotFoundError: nothing matches.
    """
    ref = ref or "production"
    digits = ref[1:] if ref.startswith("v") else ref
    if digits.isdigit():
        mv = store.get(ModelVersionRow, int(digits))
    else:
        vid = alias_target(store, ref)
        mv = store.get(ModelVersionRow, vid) if vid is not None else None
    if mv is None:
        raise NotFoundError(
            f"no model '{ref}' in this workspace; train one with `adaptloop new` or see `adaptloop models`"
        )
    return mv


def versions(store: Store) -> list[ModelVersionRow]:
    return store.all(select(ModelVersionRow).order_by(ModelVersionRow.id))


def events(store: Store) -> list[RegistryEvent]:
    return store.all(select(RegistryEvent).order_by(RegistryEvent.id))


def production_stack(store: Store) -> list[int]:
    """The versions production has pointed at, oldest first, with rolled-back ones popped (a promotion of
    the version already in production changes nothing)."""
    stack: list[int] = []
    for e in events(store):
        if e.alias != "production" or (stack and stack[-1] == e.version_id):
            continue
        if e.event == "rolled_back" and len(stack) > 1 and stack[-2] == e.version_id:
            stack.pop()
        else:
            stack.append(e.version_id)
    return stack


def rollback(store: Store, *, reason: str = "", who: str = "") -> dict[str, Any]:
    """Point ``production`` back at the version it pointed at before, as a new registry event.

    Raises:
        NotFoundError: production has no earlier version.
    """
    stack = production_stack(store)
    if not stack:
        raise NotFoundError("no production model to roll back; train one with `adaptloop new`")
    if len(stack) < 2:
        raise NotFoundError(f"production v{stack[-1]} has no earlier version to roll back to")
    current, target = stack[-1], stack[-2]
    why = reason or f"rollback from v{current}"
    _event(store, target, "rolled_back", alias="production", reason=why, data={"who": who, "from": current})
    return {"from": f"v{current}", "to": f"v{target}", "reason": why}
