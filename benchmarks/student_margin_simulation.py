"""How often the student gate refuses a student, by how much worse than its teacher it truly is.

    .venv/bin/python benchmarks/student_margin_simulation.py [--n 1000] [--discordant 40] [--margin 0.5]

A student is judged against its teacher on a frozen eval set of ``--n`` examples; the two disagree
on about ``--discordant`` of them (Poisson). For a student truly ``gap`` points worse, each
discordant example is a break with probability ``(1 + gap n / 100 / D) / 2``. Two rules are
simulated, both with a ``--margin`` of points: the margin on the point estimate alone (refuse when
breaks - fixes > margin n) and the gate's ``margin_rule`` (``adaptloop/evaluate/gate.py``: also
beyond noise, the exact binomial at ``BREAK_ALPHA``). Prints and writes
benchmarks/results/student-margin-simulation.json: the share refused per true gap.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from adaptloop.evaluate.gate import margin_rule

REPO = Path(__file__).resolve().parents[1]
GAPS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="eval set size")
    ap.add_argument("--discordant", type=float, default=40.0, help="mean examples the two models disagree on")
    ap.add_argument("--margin", type=float, default=0.5, help="points")
    ap.add_argument("--trials", type=int, default=20_000)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "student-margin-simulation.json")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    margin = a.margin / 100
    rows = []
    for gap in GAPS:
        point = gate = 0
        for _ in range(a.trials):
            d = max(1, rng.poisson(a.discordant))
            b = int(rng.binomial(d, min(1.0, (1 + gap / 100 * a.n / d) / 2)))
            point += b - (d - b) > margin * a.n
            gate += not margin_rule(b, d - b, b, a.n, margin=margin, unit="examples")[0]
        rows.append({"true_gap_points": gap, "refused_point_estimate": round(point / a.trials, 3),
                     "refused_gate": round(gate / a.trials, 3)})
        print(f"true gap {gap:4.2f} points: refused {point / a.trials:.2f} (point estimate), "
              f"{gate / a.trials:.2f} (the gate's margin rule)")
    a.out.write_text(json.dumps({"n": a.n, "discordant_mean": a.discordant, "margin_points": a.margin,
                                 "trials": a.trials, "rows": rows}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
