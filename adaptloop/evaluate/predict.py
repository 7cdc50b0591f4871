"""Score a registered model on a labelled file, or predict on raw texts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adaptloop.data.sources import load_for
from adaptloop.errors import LabelError
from adaptloop.evaluate.rows import metrics_of, score_rows
from adaptloop.store import registry
from adaptloop.store.db import ModelVersionRow, Task
from adaptloop.train import TrainedModel, load_trained
from adaptloop.train.base import Progress, no_progress
from adaptloop.types import TaskSpec
from adaptloop.workspace import Workspace


def load_version(ws: Workspace, ref: str | None, *, cached: bool = False) -> tuple[ModelVersionRow, TaskSpec,
                                                                                TrainedModel]:
    """A model version, its task spec and the loaded model; ``cached``: frozen-encoder classifiers
    embed through the workspace's embedding cache (for evaluation, not serving)."""
    mv = registry.resolve(ws.store, ref)
    spec = TaskSpec.from_dict(ws.store.get(Task, mv.task_id).spec)
    return mv, spec, load_trained(ws.artifacts.path(mv.artifact), embeddings=_cache(ws) if cached else None)


def _cache(ws: Workspace) -> Any:
    from adaptloop.search.executor import embedding_cache

    return embedding_cache(ws.root)


def evaluate_generation(spec: TaskSpec, model, path: str | Path, *, limit: int = 0, batch_size: int = 16,
                        progress: Progress = no_progress) -> dict[str, Any]:
    """Decode every sample of ``path`` (the first ``limit`` when set) and score it for the task's kind,
    presenting inputs as the model was trained to see them; with the diagnosis of its failures."""
    from adaptloop.agent.generation import present
    from adaptloop.data.generation import load_generation
    from adaptloop.diagnose.generation import diagnose, score_outputs

    loaded = load_generation(path)
    samples = list(loaded.samples[:limit] if limit else loaded.samples)
    kind = spec.output["kind"]
    how = getattr(model, "presentation", {})
    shown = [present(s, kind, how.get("instruction", ""), how.get("recipe", "raw")) for s in samples]
    outputs = model.generate(shown, batch_size=batch_size, progress=progress("decode " + Path(path).name,
                                                                                len(shown)))
    n_tokens = [len(model.tok(o, add_special_tokens=False)["input_ids"]) for o in outputs]
    scored = score_outputs(kind, samples, outputs, labels=spec.labels, n_tokens=n_tokens,
                           max_new_tokens=model.max_new_tokens)
    wrong = [{**r, "prompt": s.prompt[:300]} for r, s in zip(scored["rows"], samples) if not r["correct"]]
    return {"n": scored["n"], "quarantined": len(loaded.quarantined), "kind": kind,
            spec.primary_metric: scored[spec.primary_metric], "format_ok": scored["format_ok"],
            "findings": [{k: f[k] for k in ("kind", "summary", "severity")} for f in diagnose(kind, scored)],
            "examples_wrong": wrong[:20]}


def evaluate_file(ws: Workspace, path: str | Path, ref: str | None = None, *,
                  progress: Progress = no_progress, limit: int = 0) -> dict[str, Any]:
    """Metrics of a model version on a labelled JSONL file it never saw (``limit``: generation
    tasks score the first ``limit`` records only; decoding is slow on CPU).

    Raises:
        LabelError: the file has labels the model does not know.
        DataError: the file is unusable.
    """
    mv, spec, model = load_version(ws, ref)
    if spec.family == "generation":
        return {"model": f"v{mv.id}", "task": spec.name, "data": str(path),
                **evaluate_generation(spec, model, path, limit=limit, progress=progress,
                                      batch_size=ws.settings.generation.batch_size)}
    loaded = load_for(path, family=spec.family)
    if spec.family == "extraction":
        found = {s[2] for e in loaded.examples for s in e.spans}
    else:
        found = {e.label for e in loaded.examples}
    unknown = sorted(found - set(spec.labels))
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        what = "entity type(s)" if spec.family == "extraction" else "label(s)"
        raise LabelError(
            f"{path} has {len(unknown)} {what} the model was not trained on ({shown}); "
            "remove those rows or retrain with them"
        )
    rows = score_rows(model, loaded.examples, progress=progress, what=f"score {Path(path).name}")
    m = metrics_of(spec, rows)
    if spec.family == "extraction":
        from adaptloop.diagnose.entities import row_wrong

        errors = [r for r in rows if row_wrong(r)]
    else:
        errors = [r for r in rows if r["label"] != r["pred"]]
    return {"model": f"v{mv.id}", "task": spec.name, "data": str(path),
            "quarantined": len(loaded.quarantined), **m,
            "examples_wrong": errors[:20]}


def predict_texts(ws: Workspace, texts: Sequence[str], ref: str | None = None,
                  top_k: int = 3) -> dict[str, Any]:
    """Labels and scores for raw texts from a model version (default ``production``)."""
    mv, spec, model = load_version(ws, ref)
    if getattr(model, "kind", "") == "causal":
        from adaptloop.agent.generation import present
        from adaptloop.data.generation import Sample

        how = model.presentation
        shown = [present(Sample(prompt=t, target=""), spec.output.get("kind", "text"), how.get("instruction", ""))
                 for t in texts]
        return {"model": f"v{mv.id}", "predictions": [
            {"text": t, "output": o} for t, o in zip(texts, model.generate(shown))]}
    if getattr(model, "kind", "") == "tagger":
        return {"model": f"v{mv.id}", "predictions": [
            {"text": t, "entities": [{**e, "text": t[e["start"]:e["end"]]} for e in ents]}
            for t, ents in zip(texts, model.predict_spans(list(texts)))]}
    probs = model.predict_proba(list(texts))
    out = []
    for t, p in zip(texts, probs):
        top = p.argsort()[::-1][:top_k]
        out.append({"text": t, "label": model.labels[int(top[0])],
                    "score": round(float(p[top[0]]), 5),
                    "top": [{"label": model.labels[int(i)], "score": round(float(p[i]), 5)}
                            for i in top]})
    return {"model": f"v{mv.id}", "predictions": out}
