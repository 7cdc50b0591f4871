"""The command line: thin commands that open a workspace and call one function each.

Every reporting command takes ``--json`` and then prints exactly one JSON object on stdout
(progress bars and messages go to stderr). Errors a user can fix print one line and exit 2.

The commands live in :mod:`adaptloop.cli.commands` (model side), :mod:`adaptloop.cli.production`
(traces, improve, rollback, serve, ui) and :mod:`adaptloop.cli.bench`; how results print lives in
:mod:`adaptloop.report.terminal` and :mod:`adaptloop.report.terminal_production`.
"""

from __future__ import annotations

import typer

from adaptloop.cli import commands, production
from adaptloop.cli.base import Group
from adaptloop.cli.bench import bench_app
from adaptloop.cli.production import traces_app

__all__ = ["app", "main"]

app = typer.Typer(
    cls=Group,
    help="adaptloop: adapt small language models to a task, and keep them improving.\n\n"
         "Start with `adaptloop init ws`, then `adaptloop new PROMPT --data FILE` inside it.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
)

# in this order in `adaptloop --help` (the groups, traces and bench, are listed after the commands)
app.command()(commands.init)
app.command()(commands.new)
app.command("eval")(commands.eval_)
app.command()(commands.predict)
app.command()(commands.runs)
app.command()(commands.report)
app.command()(commands.doctrine)
app.command()(commands.convert)
app.command()(commands.models)
app.command()(commands.export)
app.command()(commands.distill)
app.command()(commands.disk)
app.add_typer(traces_app, name="traces")
app.command()(production.improve)
app.command()(production.rollback)
app.command()(production.serve)
app.command()(production.ui)
app.add_typer(bench_app, name="bench")


def main() -> None:
    """Entry point (``adaptloop``)."""
    app()
