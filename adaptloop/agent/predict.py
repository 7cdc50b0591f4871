"""How a model answers: one predictor per task family, chosen in one place.

``predictor(model)`` is the only dispatch on what a trained model is. Everything that asks a
model for answers goes through it — ``eval`` and ``predict``, the gate's per-example rows, the
improve cycle, ``serve`` and the benchmark:

- ``rows(examples)``: the scored per-example rows the metrics, the gate and the diagnosis read
  (classification: id, text, label, pred, confidence; extraction: id, text, gold and pred spans);
- ``answer(texts)``: what a caller of the served model gets back per text (a label and its
  score, entities, or the generated output).

Also here: loading a registered version (``load_version``) and scoring it on a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from adaptloop.agent.export import attach_export
from adaptloop.config import STATE_DIR
from adaptloop.data.generation import Sample, load_generation
from adaptloop.data.prompts import present
from adaptloop.data.sources import load_for
from adaptloop.diagnose.generation import diagnose, score_outputs
from adaptloop.errors import LabelError
from adaptloop.evaluate.rows import metrics_of, row_correct
from adaptloop.store import registry
from adaptloop.store.db import ModelVersionRow, Task
from adaptloop.train import TrainedModel, load_trained
from adaptloop.types import Example, Progress, TaskSpec, no_progress
from adaptloop.workspace import Workspace

Row = dict[str, Any]
_CACHES: dict[str, Any] = {}  # per-process embedding caches, by workspace


class Predictor(Protocol):
    family: str

    def rows(self, examples: Sequence[Example], *, progress: Progress = no_progress,
             what: str = "score") -> list[Row]: ...

    def answer(self, texts: Sequence[str], *, top_k: int = 1) -> list[Row]: ...


def predict_chunked(model: TrainedModel, texts: Sequence[str], *, progress: Progress = no_progress,
                    what: str = "predict", chunk: int = 512) -> np.ndarray:
    """``model.predict_proba`` in chunks, with a progress bar."""
    bar = progress(what, len(texts))
    parts = []
    for s in range(0, len(texts), chunk):
        parts.append(model.predict_proba(list(texts[s:s + chunk])))
        bar(len(parts[-1]))
    return np.concatenate(parts) if parts else np.zeros((0, len(model.labels)))


class Classify:
    family = "classification"

    def __init__(self, model: TrainedModel) -> None:
        self.model = model

    def rows(self, examples: Sequence[Example], *, progress: Progress = no_progress,
             what: str = "score") -> list[Row]:
        probs = predict_chunked(self.model, [e.text for e in examples], progress=progress, what=what)
        out = []
        for e, p in zip(examples, probs):
            k = int(p.argmax())
            out.append({"id": e.id, "text": e.text, "label": e.label,
                        "pred": self.model.labels[k], "confidence": round(float(p[k]), 5)})
        return out

    def answer(self, texts: Sequence[str], *, top_k: int = 1) -> list[Row]:
        labels = self.model.labels
        out = []
        for p in self.model.predict_proba(list(texts)):
            top = p.argsort()[::-1][:max(top_k, 1)]
            one: Row = {"label": labels[int(top[0])], "score": round(float(p[top[0]]), 5)}
            if top_k > 1:
                one["top"] = [{"label": labels[int(i)], "score": round(float(p[i]), 5)} for i in top]
            out.append(one)
        return out


class Extract:
    family = "extraction"

    def __init__(self, model: Any, chunk: int = 256) -> None:
        self.model, self.chunk = model, chunk

    def rows(self, examples: Sequence[Example], *, progress: Progress = no_progress,
             what: str = "score") -> list[Row]:
        bar = progress(what, len(examples))
        out = []
        for s in range(0, len(examples), self.chunk):
            part = examples[s:s + self.chunk]
            for e, pred in zip(part, self.model.predict_spans([e.text for e in part])):
                out.append({"id": e.id, "text": e.text, "label": e.label, "gold": [list(sp) for sp in e.spans],
                            "pred": [[p["start"], p["end"], p["label"], p["score"]] for p in pred]})
            bar(len(part))
        return out

    def answer(self, texts: Sequence[str], *, top_k: int = 1) -> list[Row]:
        return [{"entities": ents} for ents in self.model.predict_spans(list(texts))]


class Generate:
    family = "generation"

    def __init__(self, model: Any) -> None:
        self.model = model
        self.how = getattr(model, "presentation", {})

    def shown(self, sample: Sample) -> Sample:
        """The sample as the model was trained to see it (the task's instruction first)."""
        how = self.how
        return present(sample, how.get("task_kind", "text"), how.get("instruction", ""), how.get("recipe", "raw"))

    def outputs(self, samples: Sequence[Sample], *, batch_size: int = 16,
                progress: Progress = no_progress, what: str = "decode") -> list[str]:
        return self.model.generate([self.shown(s) for s in samples], batch_size=batch_size,
                                   progress=progress(what, len(samples)))

    def rows(self, examples: Sequence[Sample], *, progress: Progress = no_progress,  # type: ignore[override]
             what: str = "score", batch_size: int = 16) -> list[Row]:
        """Decode every sample and score it for the task's kind (id, output, score, correct, format_ok, ...)."""
        return self.scored(examples, self.outputs(examples, batch_size=batch_size, progress=progress, what=what))

    def scored(self, samples: Sequence[Sample], outputs: Sequence[str]) -> list[Row]:
        """Outputs already decoded for ``samples``, scored for the task's kind."""
        tok = getattr(self.model, "tok", None)
        n_tokens = [len(tok(o, add_special_tokens=False)["input_ids"]) for o in outputs] if tok else []
        return score_outputs(self.how.get("task_kind", "text"), samples, outputs,
                             labels=getattr(self.model, "labels", ()), n_tokens=n_tokens,
                             max_new_tokens=getattr(self.model, "max_new_tokens", 0))["rows"]

    def answer(self, texts: Sequence[str], *, top_k: int = 1) -> list[Row]:
        return [{"output": o} for o in self.model.generate([self.shown(Sample(prompt=t, target="")) for t in texts])]


def predictor(model: Any) -> Classify | Extract | Generate:
    """The predictor for a trained model: by what it is (a causal LM, a token tagger, a classifier)."""
    kind = getattr(model, "kind", "")
    if kind == "causal":
        return Generate(model)
    if kind == "tagger":
        return Extract(model)
    return Classify(model)


def score_rows(model: Any, examples: Sequence[Example], *, progress: Progress = no_progress,
               what: str = "score") -> list[Row]:
    """Per-example rows of ``model`` on ``examples`` (see ``Predictor.rows``)."""
    return predictor(model).rows(examples, progress=progress, what=what)


def cache_folder(root: str | Path) -> Path:
    """Where a workspace keeps what it can compute again: the embedding cache, the token-feature store beside it."""
    return Path(root) / STATE_DIR / "cache"


def embedding_cache(root: str | Path) -> Any:
    """This process's embedding cache for a workspace (backed by its disk cache)."""
    from adaptloop.train.encoder import EmbeddingCache

    key = str(root)
    if key not in _CACHES:
        _CACHES[key] = EmbeddingCache(cache_folder(root) / "embeddings")
    return _CACHES[key]


def load_version(ws: Workspace, ref: str | None, *, cached: bool = False) -> tuple[ModelVersionRow, TaskSpec,
                                                                                TrainedModel]:
    """A model version, its task spec and the loaded model (through its ONNX export when one passed its
    parity check: ``agent/export.py``); ``cached``: frozen-encoder classifiers embed through the
    workspace's embedding cache (for evaluation, not serving)."""
    mv = registry.resolve(ws.store, ref)
    spec = TaskSpec.from_dict(ws.store.get(Task, mv.task_id).spec)
    cache = embedding_cache(ws.root) if cached else None
    model = load_trained(ws.artifacts.path(mv.artifact), embeddings=cache)
    return mv, spec, attach_export(ws, mv.artifact, model)  # an accepted ONNX export serves when there is one


def evaluate_generation(spec: TaskSpec, model, path: str | Path, *, limit: int = 0, batch_size: int = 16,
                        progress: Progress = no_progress) -> dict[str, Any]:
    """Decode every sample of ``path`` (the first ``limit`` when set) and score it for the task's kind,
    presenting inputs as the model was trained to see them; with the diagnosis of its failures."""
    loaded = load_generation(path)
    samples = list(loaded.samples[:limit] if limit else loaded.samples)
    kind = spec.output["kind"]
    rows = Generate(model).rows(samples, batch_size=batch_size, progress=progress, what="decode " + Path(path).name)
    scored = {**metrics_of(spec, rows), "rows": rows}
    wrong = [{**r, "prompt": s.prompt[:300]} for r, s in zip(scored["rows"], samples) if not r["correct"]]
    return {"n": scored["n"], "quarantined": len(loaded.quarantined), "kind": kind,
            spec.primary_metric: scored[spec.primary_metric], "format_ok": scored["format_ok"],
            "findings": [{"kind": f.kind, "summary": f.summary, "severity": f.severity}
                         for f in diagnose(kind, scored)],
            "examples_wrong": wrong[:20]}


def _unknown_labels(spec: TaskSpec, examples: Sequence[Example]) -> list[str]:
    if spec.family == "extraction":
        found = {s[2] for e in examples for s in e.spans}
    else:
        found = {e.label for e in examples}
    return sorted(found - set(spec.labels))


def evaluate_file(ws: Workspace, path: str | Path, ref: str | None = None, *,
                  progress: Progress = no_progress, limit: int = 0) -> dict[str, Any]:
    """Metrics of a model version on a labelled JSONL file it never saw (``limit``: generation
    tasks score the first ``limit`` records only; decoding is slow on CPU).

    Raises:
        LabelError: the file has labels the model does not know.
        DataError: the file is unusable.
    """
    mv, spec, model = load_version(ws, ref)
    head = {"model": f"v{mv.id}", "task": spec.name, "data": str(path)}
    if spec.family == "generation":
        return {**head, **evaluate_generation(spec, model, path, limit=limit, progress=progress,
                                              batch_size=ws.settings.generation.batch_size)}
    loaded = load_for(path, family=spec.family)
    unknown = _unknown_labels(spec, loaded.examples)
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        what = "entity type(s)" if spec.family == "extraction" else "label(s)"
        raise LabelError(
            f"{path} has {len(unknown)} {what} the model was not trained on ({shown}); "
            "remove those rows or retrain with them"
        )
    rows = score_rows(model, loaded.examples, progress=progress, what=f"score {Path(path).name}")
    errors = [r for r in rows if not row_correct(r)]
    return {**head, "quarantined": len(loaded.quarantined), **metrics_of(spec, rows), "examples_wrong": errors[:20]}


def predict_texts(ws: Workspace, texts: Sequence[str], ref: str | None = None,
                  top_k: int = 3) -> dict[str, Any]:
    """Labels and scores for raw texts from a model version (default ``production``)."""
    mv, _spec, model = load_version(ws, ref)
    answers = predictor(model).answer(texts, top_k=top_k)
    out = []
    for t, a in zip(texts, answers):
        if "entities" in a:
            a = {"entities": [{**e, "text": t[e["start"]:e["end"]]} for e in a["entities"]]}
        out.append({"text": t, **a})
    return {"model": f"v{mv.id}", "predictions": out}
