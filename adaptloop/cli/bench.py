"""`adaptloop bench adaptft`: run AdaptFT-Bench and print its table, or write its logs alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adaptloop.cli.base import Group, JsonOpt
from adaptloop.report.terminal import emit_json, progress
from adaptloop.report.terminal_production import show_adaptft, show_bench_log, show_generated

bench_app = typer.Typer(cls=Group, help="Benchmarks: AdaptFT-Bench (noisy production logs that punish naive "
                        "retraining).", no_args_is_help=True)
adaptft_app = typer.Typer(cls=Group, invoke_without_command=True, no_args_is_help=False,
                          help="AdaptFT-Bench: per scenario, a base model on a small seed set, then 3 stages of "
                               "synthetic logs (poison 15% → 25% → 40%) played by the agent (improve), naive "
                               "retraining (on all feedback so far, and on the latest stage's only) and a clean "
                               "oracle.")
bench_app.add_typer(adaptft_app, name="adaptft")
ScenariosOpt = Annotated[list[str] | None, typer.Option(
    "--scenarios", "-s", help="Scenario names (repeat the option) [default: all]: banking77, clinc150, snips, "
                              "wnut17, presidio_pii, banking77-mpnet, snips-mpnet.", show_default=False)]
QuickOpt = Annotated[bool, typer.Option("--quick", help="Small stages and budgets (a smoke run).")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the seed sets, the logs and the test samples.")]
DatasetsOpt = Annotated[Path | None, typer.Option(
    "--datasets", help="Folder of the public datasets [default: $ADAPTLOOP_DATASETS, else "
                       "../shared/datasets beside the checkout].", show_default=False)]


@adaptft_app.callback()
def adaptft(
    ctx: typer.Context,
    scenarios: ScenariosOpt = None,
    quick: QuickOpt = False,
    seed: SeedOpt = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for results.json, table.md, plot.html and "
                                                        "each scenario's logs and workspace. Scenarios an "
                                                        "earlier run wrote here with the same seed and sizes, "
                                                        "and not run this time, stay in the table.")]
    = Path("adaptft-results"),
    datasets: DatasetsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the bench and print its table; `adaptloop bench adaptft generate` writes the logs alone."""
    if ctx.invoked_subcommand is not None:
        return
    from adaptloop.bench.adaptft import SCENARIOS, run

    with progress() as bars:
        doc = run(scenarios or list(SCENARIOS), quick=quick, seed=seed, out=out_dir, datasets=datasets,
                  progress=bars, log=show_bench_log)
    if as_json:
        emit_json(doc)
        return
    show_adaptft(out_dir)


@adaptft_app.command("generate")
def adaptft_generate(
    scenarios: ScenariosOpt = None,
    quick: QuickOpt = False,
    seed: SeedOpt = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder: one sub-folder of files per scenario.")]
    = Path("adaptft-logs"),
    datasets: DatasetsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write each scenario's seed set, test sample and stage logs (traces for `adaptloop traces import`),
    with answer files (the ground truth: poison or fixable, and the kind), without training anything."""
    from adaptloop.bench.adaptft import SCENARIOS
    from adaptloop.bench.adaptft_logs import generate_scenarios

    written = generate_scenarios(scenarios or list(SCENARIOS), quick=quick, seed=seed, out=out_dir,
                                 datasets=datasets)
    if as_json:
        emit_json({"written": written})
        return
    show_generated(written, out_dir)
