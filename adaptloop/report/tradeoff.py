"""Score against speed for every candidate of a run: what a faster model would cost in accuracy.

Each node's dev score (its eval score when it has no dev score: a refit trains on dev) is set
against the texts a second its model scored in the worker that trained it (``evaluate.speed``,
measured after the fit, with that worker's share of the cores: comparable with each other, not
with a server that has every core). A scatter on a log speed axis, and the same numbers as a table, so the
page also reads without the picture. Inline SVG, no script.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

from adaptloop.report.nodes import is_number, node_label, node_score, ticks

W, H = 520, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 20, 20, 40


def points(nodes: list[Mapping[str, Any]], metric: str) -> list[tuple[Mapping[str, Any], float, float, str]]:
    """(node, texts a second, score, "dev" or "eval") for every node with both measured."""
    out = []
    for n in nodes:
        speed = n.get("texts_per_second")
        split = "dev" if node_score(n, metric) is not None else "eval"
        score = node_score(n, metric, split)
        if is_number(speed) and speed > 0 and score is not None:
            out.append((n, float(speed), score, split))
    return out


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _scatter(pts: list[tuple[Mapping[str, Any], float, float, str]], metric: str) -> str:
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    logs = [math.log10(s) for _, s, _, _ in pts]
    x_lo, x_hi = math.floor(min(logs)), max(math.ceil(max(logs)), math.floor(min(logs)) + 1)
    y_marks, y_lo, y_hi, y_dec = ticks(min(p[2] for p in pts), max(p[2] for p in pts), 4)

    def sx(v: float) -> float:
        return LEFT + (math.log10(v) - x_lo) / (x_hi - x_lo) * pw

    def sy(v: float) -> float:
        return TOP + ph - (v - y_lo) / (y_hi - y_lo) * ph

    parts = [f'<line class="axis" x1="{LEFT}" y1="{TOP + ph}" x2="{LEFT + pw}" y2="{TOP + ph}"/>',
             f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + ph}"/>']
    for t in range(x_lo, x_hi + 1):
        x = LEFT + (t - x_lo) / (x_hi - x_lo) * pw
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + ph}"/>'
                     f'<text x="{x:.1f}" y="{TOP + ph + 16}" text-anchor="middle">{10 ** t:g}</text>')
    for t in y_marks:
        parts.append(f'<line class="grid" x1="{LEFT}" y1="{sy(t):.1f}" x2="{LEFT + pw}" y2="{sy(t):.1f}"/>'
                     f'<text x="{LEFT - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:.{y_dec}f}</text>')
    parts.append(f'<text x="{LEFT + pw / 2}" y="{H - 4}" text-anchor="middle">texts a second (log)</text>')
    for n, speed, score, split in pts:
        star = bool(n.get("winner"))
        color = "#bf8700" if star else "#1f6feb"
        parts.append(f'<circle class="point" data-node="{_e(n.get("id"))}" cx="{sx(speed):.1f}" cy="{sy(score):.1f}" '
                     f'r="{6 if star else 4}" fill="{color}"><title>{_e(node_label(n))}: {split} {metric} '
                     f'{score:.4f} at {speed:.1f} texts/s</title></circle>'
                     + (f'<text x="{sx(speed) - 7:.1f}" y="{sy(score) - 5:.1f}" text-anchor="end">'
                        if sx(speed) > LEFT + 0.7 * pw else f'<text x="{sx(speed) + 7:.1f}" y="{sy(score) - 5:.1f}">')
                     + f'{_e(node_label(n)[:22])}{" ★" if star else ""}</text>')
    return (f'<svg class="tradeoff" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" '
            f'aria-label="{_e(metric)} against texts a second">{"".join(parts)}</svg>')


def tradeoff_section(nodes: list[Mapping[str, Any]], metric: str) -> str:
    """The page's "score against speed" section; empty when no node has its speed measured."""
    pts = points(nodes, metric)
    if not pts:
        return ""
    rows = "".join(f'<tr><td>{_e(node_label(n))}{" ★" if n.get("winner") else ""}</td>'
                   f'<td class="num">{score:.4f}</td><td>{split}</td><td class="num">{speed:.1f}</td></tr>'
                   for n, speed, score, split in sorted(pts, key=lambda p: -p[1]))
    table = (f"<table><thead><tr><th>node</th><th>{_e(metric)}</th><th>on</th><th>texts/s</th></tr></thead>"
             f"<tbody>{rows}</tbody></table>")
    return (f'<section id="tradeoff"><h2>Score against speed</h2><p>Each candidate\'s {_e(metric)} against the '
            "texts a second its model scored in the worker that trained it (batches of 32, torch, that worker's "
            "share of the cores: compare them with each other): what a faster model costs. "
            "<code>adaptloop distill</code> makes a fast student of a slow winner.</p>"
            f'<div class="pair"><div class="scroll">{_scatter(pts, metric)}</div>{table}</div></section>')
