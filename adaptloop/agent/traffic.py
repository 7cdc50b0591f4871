"""Production traffic as the improve cycle sees it: traces read into the store, viewed with the
production model's predictions, judged by triage, clustered into a failure taxonomy, and turned
into examples (only the trusted ones are ever learned from)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import select

from adaptloop.agent.predict import predict_chunked, predictor
from adaptloop.data.sources import read_text
from adaptloop.data.spans import strat_key
from adaptloop.data.traces import read_traces
from adaptloop.diagnose.span_triage import SpanView, span_triage
from adaptloop.diagnose.taxonomy import Cluster, Failure, taxonomy
from adaptloop.diagnose.triage import TraceView, triage
from adaptloop.errors import NotFoundError
from adaptloop.store import registry
from adaptloop.store.db import Quarantine, TraceRow
from adaptloop.types import CarriedTrace, Example, Progress, TaskSpec, Verdict, no_progress
from adaptloop.workspace import Workspace


def import_traces(ws: Workspace, path: str, *, task_id: int | None = None) -> dict[str, Any]:
    """Read a trace file into the store: new ids added, known ids skipped, bad lines quarantined (once:
    importing the same file again quarantines nothing twice). Every line is accounted for: read,
    quarantined or blank."""
    traces, bad = read_traces(path)
    if task_id is None:
        try:
            task_id = registry.resolve(ws.store, "production").task_id
        except NotFoundError:
            task_id = None
    new = ws.store.add_traces([t.row(f"import:{path}", task_id) for t in traces])
    source = f"traces:{path}"
    with ws.store.session() as s:
        kept = set(s.execute(select(Quarantine.line_no, Quarantine.raw).where(Quarantine.source == source)).all())
        for q in bad:
            if (q.line_no, q.raw) not in kept:
                s.add(Quarantine(source=source, line_no=q.line_no, raw=q.raw, reason=q.reason))
    lines = read_text(path).split("\n")
    blank = sum(1 for line in lines if not line.strip()) - (not lines[-1].strip())  # the final newline ends a line
    return {"file": str(path), "read": len(traces), "new": new, "already_stored": len(traces) - new,
            "quarantined": len(bad), "blank": blank, "lines": len(traces) + len(bad) + blank}


def new_failures(ws: Workspace) -> int:
    """Unjudged traces whose feedback says the model was wrong (what `improve --watch` waits for)."""
    def wrong(out: dict[str, Any] | None, label: str | None, verdict: str | None, spans: list | None) -> bool:
        if verdict == "wrong" or (label is not None and label != (out or {}).get("label")):
            return True
        found = {(e["start"], e["end"], e["label"]) for e in (out or {}).get("entities", [])}
        return spans is not None and {tuple(sp) for sp in spans} != found

    return sum(1 for row in ws.store.unjudged_feedback() if wrong(*row))


def trace_views(rows: list[TraceRow], model: Any,
                progress: Progress = no_progress) -> list[TraceView] | list[SpanView]:
    """Trace rows as triage sees them; the model predicts those without an output."""
    if predictor(model).family == "extraction":
        return _span_views(rows, model, progress)
    missing = [i for i, r in enumerate(rows) if not (r.output or {}).get("label")]
    preds: dict[int, tuple[str, float]] = {}
    if missing:
        probs = predict_chunked(model, [rows[i].input for i in missing], progress=progress,
                                what="predict traces without output")
        for i, p in zip(missing, probs):
            preds[i] = (model.labels[int(p.argmax())], float(p.max()))
    out = []
    for i, r in enumerate(rows):
        pred, conf = preds.get(i) or ((r.output or {}).get("label"), (r.output or {}).get("score"))
        out.append(TraceView(id=r.id, text=r.input, pred=pred, confidence=conf,
                             feedback_label=r.feedback_label, verdict=r.feedback_verdict,
                             source=r.feedback_source, ts=r.feedback_ts or r.ts))
    return out


def _span_views(rows: list[TraceRow], model: Any, progress: Progress) -> list[SpanView]:
    missing = [i for i, r in enumerate(rows) if "entities" not in (r.output or {})]
    bar = progress("predict traces without output", len(missing))
    preds: dict[int, list[dict[str, Any]]] = {}
    for s in range(0, len(missing), 256):
        part = missing[s:s + 256]
        for i, ents in zip(part, model.predict_spans([rows[i].input for i in part])):
            preds[i] = ents
        bar(len(part))
    out = []
    for i, r in enumerate(rows):
        ents = preds[i] if i in preds else (r.output or {})["entities"]
        fb = None if r.feedback_spans is None else tuple(tuple(sp) for sp in r.feedback_spans)
        out.append(SpanView(id=r.id, text=r.input, pred=tuple((e["start"], e["end"], e["label"]) for e in ents),
                            feedback=fb, verdict=r.feedback_verdict, source=r.feedback_source,
                            ts=r.feedback_ts or r.ts))
    return out


def judge(views: list[TraceView] | list[SpanView], spec: TaskSpec, parent_train: list[Example],
          eval_sets: list[tuple[str, list[Example]]], embed: Callable[[list[str]], np.ndarray],
          seed: int) -> list[Verdict]:
    """The triage of every trace against production's training data and the frozen eval sets."""
    if not views:
        return []
    evals = [e for _, es in eval_sets for e in es]
    if spec.family == "extraction":
        return span_triage(views, embed([v.text for v in views]), types=spec.labels,
                           train=[(e.text, e.spans) for e in parent_train], embed=embed,
                           eval_examples=[(e.text, e.spans) for e in evals],
                           eval_x=embed([e.text for e in evals]) if evals else None)
    x = embed([v.text for v in views])
    tx = embed([e.text for e in parent_train])
    ex = embed([e.text for e in evals]) if evals else None
    return triage(views, x, labels=spec.labels, train_texts=[e.text for e in parent_train],
                  train_labels=[e.label for e in parent_train], train_x=tx,
                  eval_labels=[e.label for e in evals], eval_x=ex, oos_label=spec.out_of_scope_label,
                  seed=seed, embed=embed)


def failure_taxonomy(fixable: list[tuple[Verdict, Any]], embed: Callable[[list[str]], np.ndarray],
                     seed: int) -> list[Cluster]:
    """Fixable failures clustered: extraction by error and entity type, classification by embedding."""
    if fixable and isinstance(fixable[0][1], SpanView):
        return span_taxonomy(fixable)
    failures = [Failure(id=v.id, text=t.text, pred=t.pred or "", label=v.label or "", pattern=v.kind)
                for v, t in fixable]
    if not failures:
        return []
    return taxonomy(failures, embed([f.text for f in failures]), seed=seed)


def learnable(v: Verdict, text: str) -> Example:
    """A trusted trace as a training example (extraction: with its corrected entities)."""
    if v.spans is not None:
        return Example(text=text, label=v.label or "O", spans=v.spans, source=f"trace:{v.id}")
    return Example(text=text, label=v.label or "", source=f"trace:{v.id}")


def as_given(view: TraceView | SpanView) -> Example | None:
    """A trace with its feedback taken as given (None without one)."""
    if isinstance(view, SpanView):
        return None if view.feedback is None else trace_example(view.id, view.text, None, view.feedback)
    return None if view.feedback_label is None else trace_example(view.id, view.text, view.feedback_label)


def carried_example(spec: TaskSpec, c: CarriedTrace) -> Example:
    return trace_example(c.id, c.text, c.label, c.spans or () if spec.family == "extraction" else None)


def trace_example(id_: str, text: str, label: str | None, spans: Any = None) -> Example:
    """A trace as an example: with its entities when ``spans`` is given, else with its label."""
    if spans is not None:
        got = tuple(tuple(sp) for sp in spans)
        return Example(text=text, label=strat_key(got), spans=got, source=f"trace:{id_}")
    return Example(text=text, label=label or "", source=f"trace:{id_}")


def span_taxonomy(fixable: list[tuple[Verdict, Any]]) -> list[Cluster]:
    """Extraction failures grouped by their main error and the entity type it concerns, largest first."""
    groups: dict[tuple[str, str], list[tuple[Verdict, Any]]] = {}
    for v, view in fixable:
        gold = set(getattr(v, "spans", None) or ())
        pred = set(view.pred or ())
        types = Counter(lab for *_, lab in (gold ^ pred)) or Counter(lab for *_, lab in gold) or Counter({"O": 1})
        groups.setdefault((v.kind, types.most_common(1)[0][0]), []).append((v, view))
    out = [Cluster(name=f"{kind.replace('_', ' ')} {typ}", kind="entity", count=len(members),
                   pairs=[(kind, typ, len(members))],
                   examples=[{"text": view.text[:200], "kind": kind} for _, view in members[:3]],
                   ids=[v.id for v, _ in members])
           for (kind, typ), members in groups.items()]
    return sorted(out, key=lambda c: -c.count)
