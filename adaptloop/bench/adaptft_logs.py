"""AdaptFT-Bench's logs alone (`adaptloop bench adaptft generate`): per scenario, the seed set, the test
sample, the stage logs and their answer files, written without training anything."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from adaptloop.bench.adaptft import FULL, QUICK, SCENARIOS, default_datasets, generate, write_generated
from adaptloop.errors import DataError

__all__ = ["generate_scenarios"]


def generate_scenarios(names: Sequence[str], *, quick: bool, seed: int, out: Path,
                       datasets: Path | None = None) -> dict[str, dict[str, str]]:
    """:func:`~adaptloop.bench.adaptft.generate` and :func:`~adaptloop.bench.adaptft.write_generated` for
    each scenario named, into ``out / name``; ``{scenario: {file kind: path}}``.

    Raises:
        DataError: an unknown scenario name (nothing is written).
    """
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise DataError(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    written = {}
    for name in names:
        g = generate(SCENARIOS[name], datasets=datasets or default_datasets(), sizes=QUICK if quick else FULL,
                     seed=seed)
        written[name] = write_generated(g, out / name)
    return written
