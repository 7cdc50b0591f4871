"""The production-side commands: traces (summary, audit, import, list, quarantine), improve, rollback, serve.

Each parses its arguments, makes one call and renders the result
(:mod:`adaptloop.report.terminal_production`), or prints it as one JSON object with ``--json``.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer

from adaptloop.cli.base import Group, JsonOpt, WorkspaceOpt, open_workspace
from adaptloop.report.terminal import emit_json, progress
from adaptloop.report.terminal_production import (
    show_dashboard,
    show_improve,
    show_improve_import,
    show_rollback,
    show_serving,
    show_trace_audit,
    show_trace_import,
    show_trace_quarantine,
    show_trace_summary,
    show_traces,
    show_waiting,
)

traces_app = typer.Typer(cls=Group, help="Production traces: import logs, summarise, list by triage verdict, "
                         "and the quarantine of malformed lines.", invoke_without_command=True,
                         no_args_is_help=False)


@traces_app.callback()
def traces(ctx: typer.Context, workspace: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """Summarise the stored traces: how many, with feedback, and by triage verdict."""
    if ctx.invoked_subcommand is not None:
        return
    report = open_workspace(workspace).store.trace_summary()
    if as_json:
        emit_json(report)
        return
    show_trace_summary(report)


@traces_app.command("audit")
def traces_audit(
    run: Annotated[int | None, typer.Option("--run", help="One run only [default: every run].")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What got in: per run and set a model was trained, selected or gated on (train, dev, eval),
    how many traces went in and how many of them the triage doubted, and why.

    A trace is doubted when its verdict is not ``ok`` / ``fixable`` (a leak: should never happen)
    or when the training data gives its feedback label a probability below 0.5."""
    rows = open_workspace(workspace).store.trace_audit(run)
    if as_json:
        emit_json({"sets": rows})
        return
    show_trace_audit(rows)


@traces_app.command("import")
def traces_import(
    file: Annotated[Path, typer.Argument(help="JSONL traces (format: DESIGN.md).", show_default=False)],
    workspace: WorkspaceOpt = None, as_json: JsonOpt = False,
) -> None:
    """Import traces logged elsewhere: idempotent by id; malformed lines are quarantined with the reason."""
    from adaptloop.agent.traffic import import_traces

    r = import_traces(open_workspace(workspace), str(file))
    if as_json:
        emit_json(r)
        return
    show_trace_import(r)


@traces_app.command("list")
def traces_list(
    triage: Annotated[str | None, typer.Option(help="Only this verdict: ok, fixable, poison, out_of_scope, "
                                                    "unlabelled, unjudged.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 20,
    workspace: WorkspaceOpt = None, as_json: JsonOpt = False,
) -> None:
    """Traces with their feedback and triage verdict (why, and how much the feedback is trusted)."""
    from adaptloop.report.listings import traces_listing

    rows = traces_listing(open_workspace(workspace), triage, limit)
    if as_json:
        emit_json({"traces": rows})
        return
    show_traces(rows, triage)


@traces_app.command("quarantine")
def traces_quarantine(limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
                      workspace: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """Malformed trace lines, each with its file, line number and the reason it was set aside."""
    from adaptloop.report.listings import trace_quarantine_listing

    report = trace_quarantine_listing(open_workspace(workspace), limit)
    if as_json:
        emit_json({"quarantined": report})
        return
    show_trace_quarantine(report)


def improve(
    traces_file: Annotated[Path | None, typer.Option(
        "--traces", help="Import this JSONL trace file first (idempotent by id).")] = None,
    budget: Annotated[str | None, typer.Option(help="Wall budget of the cycle [default: [improve] budget].")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Keep running: start a cycle whenever enough new "
                                                         "failures ([improve] min_failures) have feedback.")] = False,
    interval: Annotated[float, typer.Option(help="--watch: seconds between checks.")] = 30.0,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One production cycle: judge and triage new traces → failure taxonomy → curriculum → retrain →
    regression gate → promote, or refuse with the broken examples listed.

    Poisonous traces (injections, contradictory premises, feedback bursts, labels that contradict the
    training data or a frozen eval example) are kept and shown, never trained on.
    """
    from adaptloop.agent.flows import improve_cycles

    cycles = improve_cycles(open_workspace(workspace), traces_file, budget, watch=watch, interval=interval,
                            progress=progress, on_import=show_improve_import, on_wait=show_waiting)
    for result in cycles:
        if as_json:
            emit_json(result)
        else:
            show_improve(result)


def rollback(
    reason: Annotated[str | None, typer.Option(help="Why (kept with the registry event).")] = None,
    workspace: WorkspaceOpt = None, as_json: JsonOpt = False,
) -> None:
    """Point `production` back at the version before the current one (a new registry event)."""
    from adaptloop.store import registry

    r = registry.rollback(open_workspace(workspace).store, reason=reason or "", who=f"{getpass.getuser()} (cli)")
    if as_json:
        emit_json(r)
        return
    show_rollback(r)


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [default: [serve] host].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: [serve] port].", min=1, max=65535)] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Serve the production model over HTTP: POST /v1/predict, /v1/feedback; GET /healthz, /metrics; and
    the dashboard at / (runs, models, traffic, task; it updates live).

    Every prediction is traced in the store (batched, off the request path). The server switches to a
    newly promoted model without dropping a request. Promote/rollback over HTTP (/v1/admin/..., and the
    dashboard's buttons) need `Authorization: Bearer <[serve] admin_token>` from adaptloop.toml.
    """
    from adaptloop.serve.app import run_server

    run_server(open_workspace(workspace), host, port, on_start=show_serving)


def ui(
    host: Annotated[str | None, typer.Option(help="Bind address [default: [serve] host].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: [serve] port].", min=1, max=65535)] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Serve the dashboard without a model: every run and its experiment graph, the model registry with
    its gate results, traffic and triage, the task and its frozen eval sets. Read-only unless
    [serve] admin_token is set (then the promote / roll back buttons take it).

    Open the printed address in a browser; pages update live while a run or an improve cycle writes to
    the same store (run `adaptloop new` or `adaptloop improve` in another terminal).
    """
    from adaptloop.serve.app import run_ui

    run_ui(open_workspace(workspace), host, port, on_start=show_dashboard)
