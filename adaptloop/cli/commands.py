"""The model-side commands: init, new, eval, predict, export, distill, runs, report, doctrine, convert, models,
disk.

Each parses its arguments, makes one call and renders the result (:mod:`adaptloop.report.terminal`), or
prints it as one JSON object with ``--json``. What a command calls is imported when it runs, so that
``adaptloop --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adaptloop.cli.base import JsonOpt, WorkspaceOpt, open_workspace
from adaptloop.report.terminal import (
    emit_json,
    progress,
    show_cold_start,
    show_convert,
    show_disk,
    show_distill,
    show_doctrine,
    show_draft,
    show_eval,
    show_export,
    show_init,
    show_models,
    show_note,
    show_predictions,
    show_quarantined,
    show_report_written,
    show_runs,
    show_spec,
)


def init(
    path: Annotated[Path | None, typer.Argument(help="Folder to create [default: the workspace].")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a workspace: adaptloop.toml (settings) and .adaptloop/ (store, artifacts)."""
    from adaptloop.config import resolve_workspace
    from adaptloop.workspace import init_workspace

    root = init_workspace(path or resolve_workspace(workspace))
    if as_json:
        emit_json({"workspace": str(root), "config": str(root / "adaptloop.toml")})
    else:
        show_init(root)


def new(
    prompt: Annotated[str | None, typer.Argument(help="The task in plain words.")] = None,
    data: Annotated[Path | None, typer.Option(
        "--data", "-d", help="JSONL: {text, label} (classification) or {text, spans} / {tokens, tags} "
                             "(extraction; IOB2, IOB1 or BILOU tags).")] = None,
    eval_data: Annotated[Path | None, typer.Option(
        "--eval-data", help="Optional gold JSONL in the same format: the frozen eval set and dev are drawn "
                            "from it (half each) and it is never trained on.")] = None,
    budget: Annotated[str | None, typer.Option(
        help="Wall budget, e.g. 90s, 20m, 1h [default: adaptloop.toml].")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the last interrupted run (with --budget: "
                                                          "what it may still spend; --budget 0s promotes the "
                                                          "best node so far).")] = False,
    replay: Annotated[int | None, typer.Option(
        "--replay", metavar="RUN", help="Re-decide with the LLM planner's answers stored by run RUN, offline "
                                        "(no endpoint): same data and budget give the same graph.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Accept a task drafted from the prompt (no --data) "
                                                          "without asking.")] = False,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cold start: spec → frozen eval set → curation → search → promote the winner.

    The prompt and the data decide the task family: text + label is classification, text +
    spans or tokens + tags is extraction (a prompt like "detect PII" picks extraction when a
    file holds both). With no --data the task is drafted from the prompt: by the LLM at
    [llm] url (spec, then the eval set, then training data), or offline for PII detection
    (Faker templates); the draft is shown for confirmation first (--yes accepts it).
    Trains several whole pipelines (data recipe × strategy × hyperparameters) within the
    budget, selects on a dev split, scores the winner on the frozen eval set and promotes
    it as `production`. Ctrl-C keeps the store consistent; `--resume` continues, and
    `--resume --budget 0s` promotes the best model found so far without training more.
    """
    from adaptloop.agent.flows import start_new

    ws = open_workspace(workspace)
    kind, r = start_new(ws, prompt, data, eval_data, budget, resume=resume, progress=progress,
                        on_loaded=show_quarantined, on_spec=show_spec, replay=replay,
                        on_draft=lambda d: confirm_draft(d, yes=yes), on_note=show_note)
    if as_json:
        emit_json(r)
    else:
        show_cold_start(ws, kind, r)
    if r.get("version") is None:  # no pipeline finished: say so in the exit code too
        raise typer.Exit(3)


def confirm_draft(draft: dict, *, yes: bool) -> bool:
    """Show a task drafted from the prompt; accept it with --yes, else ask (no terminal: say to pass --yes)."""
    import sys

    from adaptloop.errors import AdaptloopError

    show_draft(draft)
    if yes:
        return True
    if not sys.stdin.isatty():
        raise AdaptloopError("the task above was drafted from the prompt; pass --yes to accept it (there is no "
                             "terminal to ask in)")
    return typer.confirm("train on this task?", default=True)


def eval_(
    data: Annotated[Path, typer.Option("--data", "-d", help="Labelled JSONL the model never saw.")],
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Version (v3) or alias [default: production].")] = None,
    limit: Annotated[int, typer.Option(help="Generation: score only the first N records (0 = all).")] = 0,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score a model on labelled data: accuracy, macro-F1 and a per-class table.

    For an extraction model: entity-level (seqeval, exact span) micro precision, recall and
    F1, macro-F1 and a per-type table. For a generation model: exact match of final answers
    (math, labels), pass@1 in the sandbox (code) or ROUGE-L (summaries), format compliance
    and the diagnosis of the failures.
    """
    from adaptloop.agent.predict import evaluate_file

    ws = open_workspace(workspace)
    with progress() as bars:
        r = evaluate_file(ws, data, model, progress=bars, limit=limit)
    if as_json:
        emit_json(r)
        return
    show_eval(r, data)


def predict(
    texts: Annotated[list[str], typer.Argument(help="One or more texts to classify (or extract from).")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Version or alias [default: production].")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Classify texts — or, for an extraction model, find their entities (character offsets,
    labels and scores) — with the production model (or --model)."""
    from adaptloop.agent.predict import predict_texts

    r = predict_texts(open_workspace(workspace), texts, model)
    if as_json:
        emit_json(r)
        return
    show_predictions(r)


def export(
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Version (v3) or alias [default: production].")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a classifier to ONNX (fp32, int8, mixed int8) for fast CPU serving, checked against torch on the
    version's frozen eval set: it serves only if it predicts the same on ≥ 99.5% of the set and the
    primary metric moves ≤ 0.3 points (int8 tried first, then mixed int8, then fp32); else torch
    keeps serving.

    `serve`, `predict` and `eval` use an accepted export from then on. The verdict is recorded as a
    decision of the version's run.
    """
    from adaptloop.agent.export import export_version

    with progress() as bars:
        r = export_version(open_workspace(workspace), model, progress=bars)
    if as_json:
        emit_json(r)
        return
    show_export(r)


def distill(
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="The teacher: version (v3) or alias [default: production].")] = None,
    layers: Annotated[int | None, typer.Option(
        help="Transformer layers the student keeps of the task's encoder (MiniLM-L6 has 6; 3 runs ~2x, 2 ~3x "
             "as fast); a fine-tuned member of the teacher no deeper than this is where the student starts "
             "[default: [serve] student_layers, 3].", min=1, show_default=False)] = None,
    budget: Annotated[str, typer.Option(help="Wall budget: teacher's labels, training, gate, speed checks.")] = "10m",
    promote: Annotated[bool, typer.Option(
        "--promote", help="Serve the student when the gate's noise and margin rules pass.")] = False,
    probes: Annotated[float | None, typer.Option(
        help="Unlabelled probe texts per training text for the teacher to label (0: none) [default: [serve] "
             "student_probes, 0].", min=0, show_default=False)] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Distil a classifier (an ensemble, a base-size encoder) into one small student that is cheap to
    serve: the task's encoder cut to --layers layers (or, when the teacher holds a fine-tuned member of it
    no deeper than that, that member), trained on the teacher's probabilities over its
    training texts, over production traffic (poison left out) and over probe texts made from the
    training texts (words left out, crops, two texts spliced), where its answers show how it weighs
    classes.

    The student is gated against its teacher on every frozen eval set: not worse beyond noise, and
    not more than [serve] student_margin points (0.5) worse beyond what chance explains (its gain is
    speed, so the gain rule is waived). Both
    models' texts/s on this machine are measured and recorded. Without --promote it stays a candidate
    (an admin can promote it over `serve`'s /v1/admin/promote). `adaptloop export -m vN` then makes
    it faster still.

    Example: adaptloop distill --layers 3 --budget 15m --promote
    """
    from adaptloop.agent.budget import parse_budget
    from adaptloop.agent.distill import distill_version

    ws = open_workspace(workspace)
    with progress() as bars:
        r = distill_version(ws, model, layers=layers or ws.settings.serve.student_layers,
                            budget_s=parse_budget(budget), promote=promote, progress=bars,
                            probes=ws.settings.serve.student_probes if probes is None else probes)
    if as_json:
        emit_json(r)
        return
    show_distill(r)


def runs(
    run: Annotated[int | None, typer.Argument(help="Show one run [default: all].")] = None,
    show_graph: Annotated[bool, typer.Option(
        "--graph", help="Draw each run's experiment graph as a tree (gains green, drops red, ★ winner).")] = False,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The experiment graph: every node, why it was tried, and its scores."""
    from adaptloop.report.runs import runs_listing

    ws = open_workspace(workspace)
    report = runs_listing(ws, run)
    if as_json:
        emit_json({"runs": report})
        return
    show_runs(ws, report, show_graph)


def report(
    run: Annotated[int | None, typer.Argument(help="The run [default: the latest].")] = None,
    out_path: Annotated[Path | None, typer.Option(
        "--out", "-o", help="HTML file to write [default: WORKSPACE/reports/run-N.html].")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write one self-contained HTML page for a run: graph, curves, confusions, findings, decisions."""
    from adaptloop.report.runs import write_run_report

    r = write_run_report(open_workspace(workspace), run, out_path)
    if as_json:
        emit_json(r)
    else:
        show_report_written(r)


def doctrine(workspace: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """What the agent does by default (regimes, interventions) and what it has learned across runs."""
    from adaptloop.report.listings import doctrine_listing

    report = doctrine_listing(open_workspace(workspace))
    if as_json:
        emit_json(report)
        return
    show_doctrine(report)


def convert(
    data: Annotated[Path, typer.Argument(help="Entity JSONL: {text, spans} or {tokens, tags} (IOB2, IOB1, BILOU).")],
    to: Annotated[str, typer.Option("--to", help="Target format: 'spans' (character offsets) or 'tags' (IOB2).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the converted JSONL.")],
    as_json: JsonOpt = False,
) -> None:
    """Convert extraction data between text + character spans and tokens + IOB2 tags.

    Tags are read in any supported scheme and written as IOB2 over word units (words and
    single punctuation marks, split at every entity boundary). Malformed lines are not
    written; each is listed with its reason.
    """
    from adaptloop.data.convert import convert_extraction

    report = convert_extraction(data, to, output)
    if as_json:
        emit_json(report)
        return
    show_convert(report)


def models(workspace: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """The registry: model versions, their aliases and the events that set them."""
    from adaptloop.report.listings import models_listing

    report = models_listing(open_workspace(workspace))
    if as_json:
        emit_json(report)
        return
    show_models(report)


def disk(
    prune: Annotated[bool, typer.Option(
        "--prune", help="Remove the models of finished runs' nodes that no model version uses (their scores, "
                        "predictions and decisions stay), ONNX exports of removed models and leftovers of "
                        "interrupted writes.")] = False,
    caches: Annotated[bool, typer.Option(
        "--caches", help="Clear the embedding cache and the token-feature store (a next run computes what it "
                         "needs again). Refused while a run is running.")] = False,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What the workspace holds on disk, part by part, and what --prune or --caches would free.

    Without an option nothing is removed. Model versions (every registered model, promoted or
    not), data, eval sets, predictions and the nodes of a run that may still resume are
    always kept.
    """
    from adaptloop.agent.disk import disk_report

    report = disk_report(open_workspace(workspace), prune=prune, caches=caches)
    if as_json:
        emit_json(report)
        return
    show_disk(report)
