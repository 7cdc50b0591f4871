"""A model version exported for serving (ONNX), under a parity check on its frozen eval set.

The version's own run froze an eval set before training; torch and the export both score it. The
export may serve only when its predictions (a label, or a text's entities) equal torch's on at
least 99.5% of that set and the
primary metric moves by at most 0.3 points. int8 is tried first (the fastest), then int8 with the
feed-forward output projections in fp32, then fp32; when
none holds, the export is refused with the numbers and torch keeps serving. The verdict is kept
beside the graphs in ``.adaptloop/exports/<artifact>/export.json`` (an artifact is immutable:
the export sits beside it, not in it), and every export is a decision of the version's run.
``attach_export`` is how `serve`, `predict` and `eval` pick it up. ``export_artifact`` exports a model
that is not a version yet: a node about to compete to serve, timed through its export against
``[serve] min_throughput`` (``agent/distill.py``); the version it becomes reuses that verdict.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from adaptloop.config import STATE_DIR
from adaptloop.errors import WorkspaceError
from adaptloop.evaluate.metrics import primary
from adaptloop.evaluate.rows import metrics_of
from adaptloop.store import registry
from adaptloop.store.db import Node, Run
from adaptloop.types import EvalSet, Progress, no_progress
from adaptloop.workspace import Workspace

AGREEMENT_MIN = 0.995  # share of the eval set on which the export predicts what torch predicts
METRIC_TOLERANCE = 0.003  # |primary metric of the export - torch's|, absolute
VERDICT = "export.json"


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two rows predict the same: the label, or the same entities (their scores aside)."""
    if "gold" in a:
        return {tuple(p[:3]) for p in a["pred"]} == {tuple(p[:3]) for p in b["pred"]}
    return a["pred"] == b["pred"]


STAGING_SUFFIX = ".tmp"  # an export's folder while it is written, renamed when it is whole


def export_dir(ws: Workspace, artifact: str) -> Path:
    return ws.root / STATE_DIR / "exports" / artifact


def served_precision(ws: Workspace, artifact: str) -> str | None:
    """The precision the export of ``artifact`` serves in (int8 / int8-mixed / fp32), or None: torch serves."""
    path = export_dir(ws, artifact) / VERDICT
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("serves")


def kept_verdict(ws: Workspace, artifact: str, eval_set_id: str) -> dict[str, Any] | None:
    """The verdict of an export of ``artifact`` already judged against eval set ``eval_set_id`` (an artifact never
    changes, so it stands), or None."""
    path = export_dir(ws, artifact) / VERDICT
    if not path.is_file():
        return None
    verdict = json.loads(path.read_text(encoding="utf-8"))
    return verdict if verdict.get("eval_set") == eval_set_id else None


def attach_export(ws: Workspace, artifact: str, model: Any, threads: int = 0) -> Any:
    """``model`` embedding through its accepted export when there is one (else unchanged)."""
    precision = served_precision(ws, artifact)
    if precision is None:
        return model
    from adaptloop.train.onnx_export import attach

    return attach(model, export_dir(ws, artifact), precision, threads)


def export_version(ws: Workspace, ref: str | None = None, *, reuse: bool = False,
                   progress: Progress = no_progress) -> dict[str, Any]:
    """Export version ``ref`` (default: production) to ONNX and judge it against torch on its run's
    frozen eval set; what was tried and what serves (``export_artifact``; ``reuse``: keep a verdict its
    model already has, as when serving timed it through its export before it was registered).

    Raises:
        NotFoundError: no such version.
        WorkspaceError: the version is neither an encoder classifier nor a tagger (a causal LM).
    """
    mv = registry.resolve(ws.store, ref)
    run = ws.store.get(Run, ws.store.get(Node, mv.node_id).run_id)
    return export_artifact(ws, run, mv.artifact, f"v{mv.id}", reuse=reuse, progress=progress)


def export_artifact(ws: Workspace, run: Run, artifact: str, what: str, *, reuse: bool = False,
                    progress: Progress = no_progress) -> dict[str, Any]:
    """Export the model at ``artifact`` (``what``: how decisions name it, a version or a node of ``run``) to
    ONNX and judge it against torch on ``run``'s frozen eval set; a decision of ``run``. ``reuse``: when the
    artifact was exported against that eval set before, its verdict stands (an artifact never changes).

    Raises:
        WorkspaceError: the model is neither an encoder classifier nor a tagger, or ``run`` froze no eval set.
    """
    from adaptloop.agent.predict import score_rows
    from adaptloop.agent.prepare import run_eval_set
    from adaptloop.train import load_trained
    from adaptloop.train.onnx_export import PRECISIONS, attach, export, exportable

    store = ws.store
    spec = store.run_state(run).spec
    eval_set = run_eval_set(ws, run)
    folder = export_dir(ws, artifact)
    verdict = kept_verdict(ws, artifact, eval_set.id) if reuse and eval_set is not None else None
    if verdict is not None:
        reason = f"{what} has the export of {verdict['version']} (the same model): {verdict['reason']}"
        store.decide(run.id, "export", reason, version=what, serves=verdict["serves"], tried=verdict["tried"])
        return {**verdict, "version": what, "reason": reason}
    path = ws.artifacts.path(artifact)
    model = load_trained(path)
    if not exportable(model):
        raise WorkspaceError(f"{what} is a {spec.family} model: ONNX export covers encoder classifiers "
                             "(frozen, fine-tuned, LoRA, their ensembles and thresholds) and taggers (alone or "
                             "averaged); it keeps serving with torch")
    if eval_set is None:
        raise WorkspaceError(f"{what} comes from run {run.id}, which froze no eval set: there is nothing to check "
                             "an export against; export a version from a cold start or an improve cycle")
    examples = eval_set.examples
    t0 = time.monotonic()
    base_rows = score_rows(model, examples, progress=progress, what="score with torch")
    torch_s = time.monotonic() - t0
    base_metric = primary(metrics_of(spec, base_rows), spec.primary_metric)
    staging = folder.with_name(folder.name + STAGING_SUFFIX)
    shutil.rmtree(staging, ignore_errors=True)
    t0 = time.monotonic()
    export(model, staging)
    export_s = time.monotonic() - t0
    tried, serves = [], None
    for precision in PRECISIONS:
        candidate = attach(load_trained(path), staging, precision)
        t0 = time.monotonic()
        rows = score_rows(candidate, examples, progress=progress, what=f"score with ONNX {precision}")
        seconds = time.monotonic() - t0
        agree = sum(_same(a, b) for a, b in zip(base_rows, rows)) / max(1, len(rows))
        metric = primary(metrics_of(spec, rows), spec.primary_metric)
        ok = agree >= AGREEMENT_MIN and abs(metric - base_metric) <= METRIC_TOLERANCE
        tried.append({"precision": precision, "agreement": round(agree, 5), spec.primary_metric: round(metric, 5),
                      "seconds": round(seconds, 2), "passed": ok})
        if ok:
            serves = precision
            break
    t = tried[-1]
    if serves:
        reason = (f"{what} serves through ONNX {serves}: same prediction as torch on {t['agreement']:.2%} of eval "
                  f"set {eval_set.id} (n={len(examples)}, ≥ {AGREEMENT_MIN:.1%}), {spec.primary_metric} "
                  f"{t[spec.primary_metric]:.4f} vs {base_metric:.4f} (within {METRIC_TOLERANCE}); "
                  f"scoring it took {t['seconds']:.1f}s vs torch {torch_s:.1f}s")
    else:
        reason = (f"{what} keeps serving with torch: no export agreed with it closely enough on eval set "
                  f"{eval_set.id} (n={len(examples)}): " + "; ".join(
                      f"{x['precision']} {x['agreement']:.2%} same, {spec.primary_metric} {x[spec.primary_metric]:.4f}"
                      for x in tried) + f" vs torch {base_metric:.4f}")
    verdict = {"version": what, "artifact": artifact, "eval_set": eval_set.id, "n": len(examples),
               "torch": {spec.primary_metric: round(base_metric, 5), "seconds": round(torch_s, 2)},
               "export_seconds": round(export_s, 1), "tried": tried, "serves": serves, "reason": reason}
    if not serves:  # the graphs are not kept; the verdict is
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    (staging / VERDICT).write_text(json.dumps(verdict, indent=1), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    store.decide(run.id, "export", reason, version=what, serves=serves, tried=tried)
    return verdict


def export_seconds(eval_set: EvalSet, node: Node) -> float | None:
    """The least an export of ``node``'s model takes: the parity check scores its run's frozen ``eval_set`` with
    torch, then with the first precision tried (at torch's speed at best: int8 ran 2-3 times as fast, fp32 as
    fast), at the speed the search measured the node at. None when that is unknown."""
    if not node.texts_per_second:
        return None
    return 2 * len(eval_set.examples) / node.texts_per_second


def export_production(ws: Workspace, *, seconds_left: float | None = None,
                      progress: Progress = no_progress) -> dict[str, Any] | None:
    """``[serve] export`` after a cold start: production exported under the parity check, when the
    exporter knows its kind of model (not a causal LM, nor a test's stand-in). None when off or not
    exportable; the verdict otherwise (refused exports included: torch serves them). ``seconds_left``: what
    is left of the run's budget; an export that cannot fit it (``export_seconds``) waits for `adaptloop
    export` (measured: banking77 at 20 minutes without a serving limit, the export of the winner, an ensemble
    with a frozen mpnet member at 25 texts/s, took 125 s of four eval-set passes, and the run ended 98 s past
    its budget)."""
    if not ws.settings.serve.export:
        return None
    mv = registry.resolve(ws.store, "production")
    node = ws.store.get(Node, mv.node_id)
    run = ws.store.get(Run, node.run_id)
    if ws.store.run_state(run).spec.family == "generation":  # decided before loading a causal LM
        return None
    need = None
    if seconds_left is not None:
        from adaptloop.agent.prepare import run_eval_set

        eval_set = run_eval_set(ws, run)  # an export made already (serving timed it through one) is kept
        if eval_set is not None and kept_verdict(ws, mv.artifact, eval_set.id) is None:
            need = export_seconds(eval_set, node)
    if need is not None and seconds_left is not None and need > seconds_left:
        reason = (f"v{mv.id} is not exported within the budget: its export and parity check take {need:.0f}s at "
                  f"least (its eval set scored with torch and with ONNX at {node.texts_per_second:.0f} texts/s), "
                  f"{max(0.0, seconds_left):.0f}s are left; it serves with torch until `adaptloop export` exports it")
        ws.store.decide(run.id, "export", reason, version=f"v{mv.id}", serves=None, deferred=True,
                        seconds_needed=round(need, 1), seconds_left=round(seconds_left, 1))
        return {"version": f"v{mv.id}", "serves": None, "deferred": True, "reason": reason}
    try:  # export_version loads the model once and says when the exporter does not know it
        return export_version(ws, f"v{mv.id}", reuse=True, progress=progress)
    except WorkspaceError:  # not exportable, or no frozen eval set to check against: torch serves
        return None
