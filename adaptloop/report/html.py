"""One search run as a single self-contained HTML page: inline CSS and inline SVG, no network at all.

The input is a plain JSON-able *view* dict with the keys ``run``, ``nodes``, ``findings``, ``decisions``,
``confusions`` and ``per_class``; any of them may be missing or empty. Rendering is pure (the view is never
mutated) and every piece of text taken from the view is escaped.

Stable hooks for tests and styling: sections ``#header #graph #curves #confusions #per-class #findings
#decisions``; ``svg.graph`` holding one ``g.node`` per node (``id="node-<id>"``, ``data-id``, ``data-name``,
``data-status``; extra classes ``winner``, ``dropped``, ``status-<status>``) and one ``g.edge`` per parent link
(``data-from``, ``data-to``); ``svg.curve`` per charted learning curve (``data-node``); ``svg.heatmap``;
tables ``table.confusions``, ``table.per-class``, ``table.findings``; ``ol.timeline > li.decision``.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import tempfile
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

from adaptloop.report.nodes import forest, node_label, node_score, short_encoder
from adaptloop.report.nodes import is_number as _is_num
from adaptloop.report.nodes import ticks as _ticks
from adaptloop.report.tradeoff import tradeoff_section

__all__ = ["CSS", "chart_svg", "forest", "node_label", "node_score", "render_html", "render_sections", "short_encoder",
           "write_report"]

# graph layout, in SVG pixels
BOX_W, BOX_H = 200, 62  # three short text lines per node box
GAP_X, GAP_Y = 26, 58  # GAP_Y leaves room for the intervention label above each child
PAD = 16
NAME_CHARS, DETAIL_CHARS, EDGE_CHARS = 24, 30, 30  # clip text to the box; the full text is in <title>
# learning-curve charts
CHART_W, CHART_H = 460, 240
M_LEFT, M_RIGHT, M_TOP, M_BOTTOM = 50, 50, 30, 38  # M_RIGHT: room for the loss axis
X_KEYS = (("step", False), ("epoch", False), ("C", True))  # (key, log scale): first key every point has wins
SERIES_COLORS = {"dev_accuracy": "#1f6feb", "train_accuracy": "#2da44e", "train_loss": "#cf222e"}
OTHER_COLORS = ("#8250df", "#bf8700", "#0a7b83", "#6e7781")
# diagnosis tables
TOP_CONFUSIONS = 15
HEATMAP_LABELS = 8  # most-confused labels in the heatmap; more cells become unreadable
WORST_CLASSES = 12
DECISION_DATA_CHARS = 2000  # a decision's data is context, not the story: clip it

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2328;margin:0;background:#f6f8fa}
main{max-width:1200px;margin:0 auto;padding:16px 24px 48px}
section,header{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:12px 18px;margin:14px 0}
h1{font-size:22px;margin:4px 0 8px}h2{font-size:17px;margin:4px 0 10px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:3px 14px;margin:0}dt{color:#57606a}dd{margin:0}
.bar{display:inline-block;width:160px;height:8px;background:#eaeef2;border-radius:4px;vertical-align:middle}
.bar span{display:block;height:100%;background:#1f6feb;border-radius:4px}
.scroll{overflow-x:auto}.empty{color:#57606a;font-style:italic}
table{border-collapse:collapse;font-size:13px;margin:6px 0}th,td{border-bottom:1px solid #eaeef2;padding:4px 10px;
text-align:left;vertical-align:top}th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}.pair{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
svg text{font-family:system-ui,sans-serif}
g.node rect{fill:#fff;stroke:#8c959f;stroke-width:1.3}g.node text.name{font-weight:600;font-size:13px}
g.node text{font-size:11.5px;fill:#1f2328}
g.node.up rect{fill:#dafbe1}g.node.down rect{fill:#ffebe9}
g.node.winner rect{fill:#fff8c5;stroke:#bf8700;stroke-width:3}
g.node.dropped rect{fill:#f6f8fa;stroke-dasharray:6 3}g.node.dropped text{fill:#57606a}
g.node.status-failed rect{fill:#ffebe9;stroke:#cf222e;stroke-dasharray:4 2}
g.node.status-interrupted rect{fill:#fff1e5;stroke:#bc4c00;stroke-dasharray:2 2}
g.node.status-running rect{stroke:#1f6feb;stroke-width:2}
g.node.rolled-back rect{stroke:#8250df;stroke-width:2.5;stroke-dasharray:3 3}
g.node text.gain{fill:#1a7f37}g.node text.drop{fill:#cf222e}
g.edge path{fill:none;stroke:#8c959f;stroke-width:1.4}g.edge polygon{fill:#8c959f}
g.edge.to-dropped path{stroke-dasharray:6 3}g.edge text{font-size:11px;fill:#57606a;text-anchor:middle;
paint-order:stroke;stroke:#fff;stroke-width:4px}
.legend span{display:inline-block;margin-right:14px;font-size:12px;color:#57606a}
.legend i{display:inline-block;width:14px;height:10px;margin-right:4px;border:1.5px solid #8c959f;vertical-align:middle}
svg.curve{background:#fff;border:1px solid #eaeef2;border-radius:6px}svg.curve text{font-size:11px;fill:#57606a}
svg.curve .axis{stroke:#8c959f}svg.curve .grid{stroke:#eaeef2}
svg.tradeoff{background:#fff;border:1px solid #eaeef2;border-radius:6px}svg.tradeoff text{font-size:11px;fill:#57606a}
svg.tradeoff .axis{stroke:#8c959f}svg.tradeoff .grid{stroke:#eaeef2}svg.curve polyline{fill:none;stroke-width:2}
svg.heatmap text{font-size:11px;fill:#1f2328}
ol.timeline{list-style:none;padding-left:0;border-left:3px solid #d0d7de;margin-left:6px}
li.decision{position:relative;padding:2px 0 10px 16px}li.decision::before{content:"";position:absolute;left:-8px;
top:7px;width:11px;height:11px;border-radius:50%;background:#1f6feb}.kind{font-weight:600;margin:0 6px}
time{color:#57606a;font-size:12px}pre{white-space:pre-wrap;font-size:12px;background:#f6f8fa;padding:6px;margin:4px 0}
"""


# ------------------------------------------------------------------------------------------ small pure helpers
def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if _is_num(x) else "—"


def _clip(text: Any, n: int) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def _slug(text: Any) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", str(text or "unknown").lower()).strip("-") or "unknown"


def _layout(roots: list[Hashable], children: dict[Hashable, list[Hashable]]) -> dict[Hashable, tuple[float, int]]:
    """``{id: (column, depth)}``: leaves take successive columns, a parent sits centred over its children."""
    pos: dict[Hashable, tuple[float, int]] = {}
    next_col = 0
    for root in roots:
        stack: list[tuple[Hashable, int, bool]] = [(root, 0, False)]
        while stack:  # iterative post-order: a long chain of refinements must not hit the recursion limit
            i, depth, done = stack.pop()
            kids = children.get(i, [])
            if kids and not done:
                stack.append((i, depth, True))
                stack.extend((k, depth + 1, False) for k in reversed(kids))
            elif kids:
                pos[i] = ((pos[kids[0]][0] + pos[kids[-1]][0]) / 2, depth)
            else:
                pos[i] = (next_col, depth)
                next_col += 1
    return pos


# ------------------------------------------------------------------------------------------------ sections
def _header(view: Mapping[str, Any], nodes: list[Mapping[str, Any]], metric: str) -> str:
    run = view.get("run") or {}
    facts = [("Run", f"#{_e(run.get('id', '?'))} · {_e(run.get('status', 'unknown'))}"),
             ("Primary metric", _e(metric))]
    if run.get("started_at"):
        facts.append(("Started", _e(run["started_at"])))
    spent, budget = run.get("spent_s"), run.get("budget_s")
    if _is_num(spent) or _is_num(budget):
        text = f"{_num(spent, 0)} s of {_num(budget, 0)} s"
        bar = ""
        if _is_num(spent) and _is_num(budget) and budget > 0:
            pct = max(0.0, min(100.0, 100 * spent / budget))
            text += f" ({pct:.0f}%)"
            bar = f' <span class="bar"><span style="width:{pct:.1f}%"></span></span>'
        facts.append(("Budget used", text + bar))
    if run.get("stop_reason"):
        facts.append(("Stop reason", _e(run["stop_reason"])))
    if run.get("eval_set_id"):
        facts.append(("Eval set", f'<code title="{_e(run["eval_set_id"])}">{_e(_clip(run["eval_set_id"], 16))}</code>'))
    failed = sum(n.get("status") == "failed" for n in nodes)
    dropped = sum(bool(n.get("dropped")) for n in nodes)
    facts.append(("Experiments", f"{len(nodes)} ({failed} failed, {dropped} rolled back)"))
    winner = next((n for n in nodes if n.get("winner")), None)
    if winner is not None:
        facts.append(("Winner", f'<strong id="winner">★ {_e(node_label(winner))}</strong> — dev '
                                f"{_num(node_score(winner, metric))}, eval {_num(node_score(winner, metric, 'eval'))}"))
    else:
        facts.append(("Winner", '<span class="empty">none</span>'))
    rows = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    return f'<header id="header"><h1>{_e(run.get("task") or "Search run")}</h1><dl class="facts">{rows}</dl></header>'


def _node_svg(node: Mapping[str, Any], x: float, y: float, metric: str, parent_score: float | None) -> str:
    status = node.get("status") or "unknown"
    classes = ["node", f"status-{_slug(status)}"] + ["winner"] * bool(node.get("winner")) + [
        "dropped"] * bool(node.get("dropped"))
    pipe = node.get("pipeline") or {}
    detail = " · ".join(str(p) for p in (pipe.get("strategy"), pipe.get("recipe"), short_encoder(pipe.get("encoder")))
                        if p)
    score = node_score(node, metric)
    score_text, score_class = f"dev {_num(score)}", "score"
    if score is not None and parent_score is not None:
        delta = score - parent_score
        score_text += f" ({delta:+.3f})"
        score_class += " gain" if delta > 0 else " drop" if delta < 0 else ""
        classes += ["up"] * (delta > 0) + ["down"] * (delta < 0)
    classes += ["rolled-back"] * bool(node.get("rolled_back"))
    if status != "done":
        score_text += f" · {status}"
    tip = [f"{node_label(node)} [{status}]", f"intervention: {node.get('intervention') or '—'}"
           + (f" (proposed by {node['proposer']})" if node.get("proposer") else "")]
    if node.get("rolled_back"):
        tip.append("its model version was promoted, then rolled back")
    if node.get("reason"):
        tip.append(f"hypothesis: {node['reason']}")
    if pipe:
        tip.append("pipeline: " + json.dumps(pipe, sort_keys=True, default=str))
    if node.get("dev"):
        tip.append("dev: " + ", ".join(f"{k}={_num(v)}" for k, v in node["dev"].items()))
    if node.get("eval"):
        tip.append("eval: " + ", ".join(f"{k}={_num(v)}" for k, v in node["eval"].items()))
    if _is_num(node.get("train_seconds")):
        tip.append(f"train: {node['train_seconds']:.1f} s")
    mark = "★ " if node.get("winner") else "↩ " if node.get("dropped") or node.get("rolled_back") else ""
    return (f'<g class="{" ".join(classes)}" id="node-{_e(node.get("id"))}" data-id="{_e(node.get("id"))}" '
            f'data-name="{_e(node.get("name"))}" data-status="{_e(status)}" transform="translate({x:.1f},{y:.1f})">'
            f"<title>{_e(chr(10).join(tip))}</title>"
            f'<rect width="{BOX_W}" height="{BOX_H}" rx="6"/>'
            f'<text class="name" x="9" y="18">{_e(mark + _clip(node_label(node), NAME_CHARS))}</text>'
            f'<text class="detail" x="9" y="36">{_e(_clip(detail, DETAIL_CHARS))}</text>'
            f'<text class="{score_class}" x="9" y="53">{_e(_clip(score_text, DETAIL_CHARS))}</text></g>')


def _edge_svg(parent: Mapping[str, Any], child: Mapping[str, Any], p: tuple[float, float],
              c: tuple[float, float]) -> str:
    x1, y1 = p[0] + BOX_W / 2, p[1] + BOX_H
    x2, y2 = c[0] + BOX_W / 2, c[1]
    mid = (y1 + y2) / 2
    classes = "edge" + " to-dropped" * bool(child.get("dropped")) + " to-failed" * (child.get("status") == "failed")
    label = child.get("intervention") or ""
    return (f'<g class="{classes}" data-from="{_e(parent.get("id"))}" data-to="{_e(child.get("id"))}">'
            f"<title>{_e(label)}</title>"
            f'<path d="M{x1:.1f},{y1:.1f} C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} {x2:.1f},{y2 - 5:.1f}"/>'
            f'<polygon points="{x2 - 4:.1f},{y2 - 6:.1f} {x2 + 4:.1f},{y2 - 6:.1f} {x2:.1f},{y2:.1f}"/>'
            f'<text x="{x2:.1f}" y="{y2 - 12:.1f}">{_e(_clip(label, EDGE_CHARS))}</text></g>')


def _graph(nodes: list[Mapping[str, Any]], metric: str) -> str:
    if not nodes:
        return '<section id="graph"><h2>Experiment graph</h2><p class="empty">No experiments recorded.</p></section>'
    by_id = {n.get("id"): n for n in nodes}
    roots, children = forest(nodes)
    pos = _layout(roots, children)
    xy = {i: (PAD + col * (BOX_W + GAP_X), PAD + depth * (BOX_H + GAP_Y)) for i, (col, depth) in pos.items()}
    width = max(x for x, _ in xy.values()) + BOX_W + PAD
    height = max(y for _, y in xy.values()) + BOX_H + PAD
    parent_of = {k: pid for pid, kids in children.items() for k in kids}
    edges = [_edge_svg(by_id[pid], by_id[k], xy[pid], xy[k]) for pid, kids in children.items() for k in kids]
    boxes = [_node_svg(n, *xy[n.get("id")], metric,
                       node_score(by_id[parent_of[n.get("id")]], metric) if n.get("id") in parent_of else None)
             for n in by_id.values()]
    legend = ('<p class="legend"><span><i style="background:#fff8c5;border-color:#bf8700"></i>winner ★</span>'
              '<span><i style="background:#dafbe1"></i>better than its parent</span>'
              '<span><i style="background:#ffebe9"></i>worse</span>'
              '<span><i style="background:#f6f8fa;border-style:dashed"></i>rolled back ↩</span>'
              '<span><i style="border-color:#8250df;border-style:dashed"></i>version rolled back from production</span>'
              '<span><i style="background:#ffebe9;border-color:#cf222e;border-style:dashed"></i>failed</span>'
              '<span><i style="background:#fff1e5;border-color:#bc4c00;border-style:dotted"></i>interrupted</span>'
              "<span>edge label = intervention; hover a box for its hypothesis</span></p>")
    return (f'<section id="graph"><h2>Experiment graph</h2><div class="scroll">'
            f'<svg class="graph" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="experiment graph">'
            f'{"".join(edges)}{"".join(boxes)}</svg></div>{legend}</section>')


def _curve_series(curve: Any) -> tuple[str, bool, dict[str, list[tuple[float, float]]]] | None:
    """``(x key, log x, {series: sorted points})`` of a curve worth charting (a series of >= 2 points), else None."""
    points = [p for p in (curve or []) if isinstance(p, Mapping)]
    for x_key, log_x in X_KEYS:
        if points and all(_is_num(p.get(x_key)) and (not log_x or p[x_key] > 0) for p in points):
            break
    else:
        return None
    series: dict[str, list[tuple[float, float]]] = {}
    for p in points:
        x = math.log10(p[x_key]) if log_x else float(p[x_key])
        for k, v in p.items():
            if k.startswith(("dev_", "train_")) and _is_num(v):
                series.setdefault(k, []).append((x, float(v)))
    order = {"dev_": 0, "train_": 1}
    keep = sorted((k for k, pts in series.items() if len(pts) >= 2),
                  key=lambda k: ("loss" in k, order[k.split("_")[0] + "_"], k))
    return (x_key, log_x, {k: sorted(series[k]) for k in keep}) if keep else None


def chart_svg(node: Mapping[str, Any], x_key: str, log_x: bool, series: dict[str, list[tuple[float, float]]],
               title: str | None = None) -> str:
    """A line chart of ``series`` (x, y points); keys with "loss" go on a right-hand axis."""
    pw, ph = CHART_W - M_LEFT - M_RIGHT, CHART_H - M_TOP - M_BOTTOM
    xs = [x for pts in series.values() for x, _ in pts]
    x_ticks, x_lo, x_hi, x_dec = _ticks(min(xs), max(xs))
    if log_x:  # whole decades only: 10**0.5 is not a tick anyone reads
        x_lo, x_hi = math.floor(min(xs)), max(math.ceil(max(xs)), math.floor(min(xs)) + 1)
        x_ticks = list(range(x_lo, x_hi + 1))

    def sx(x: float) -> float:
        return M_LEFT + (x - x_lo) / (x_hi - x_lo) * pw

    parts = [f'<line class="axis" x1="{M_LEFT}" y1="{M_TOP + ph}" x2="{M_LEFT + pw}" y2="{M_TOP + ph}"/>']
    for t in x_ticks:
        label = f"{10 ** t:g}" if log_x else f"{t:.{x_dec}f}"
        parts.append(f'<line class="axis" x1="{sx(t):.1f}" y1="{M_TOP + ph}" x2="{sx(t):.1f}" y2="{M_TOP + ph + 4}"/>'
                     f'<text x="{sx(t):.1f}" y="{M_TOP + ph + 16}" text-anchor="middle">{_e(label)}</text>')
    parts.append(f'<text x="{M_LEFT + pw / 2}" y="{CHART_H - 4}" text-anchor="middle">'
                 f"{_e(x_key + (' (log)' if log_x else ''))}</text>")
    for side, keys in (("left", [k for k in series if "loss" not in k]), ("right", [k for k in series if "loss" in k])):
        if not keys:
            continue
        ys = [y for k in keys for _, y in series[k]]
        y_ticks, y_lo, y_hi, y_dec = _ticks(min(ys), max(ys), 4)
        ax = M_LEFT if side == "left" else M_LEFT + pw

        def sy(y: float, lo: float = y_lo, hi: float = y_hi) -> float:
            return M_TOP + ph - (y - lo) / (hi - lo) * ph

        parts.append(f'<line class="axis" x1="{ax}" y1="{M_TOP}" x2="{ax}" y2="{M_TOP + ph}"/>')
        for t in y_ticks:
            tx, anchor = (ax - 6, "end") if side == "left" else (ax + 6, "start")
            if side == "left":
                parts.append(f'<line class="grid" x1="{M_LEFT}" y1="{sy(t):.1f}" x2="{M_LEFT + pw}" y2="{sy(t):.1f}"/>')
            parts.append(f'<text x="{tx}" y="{sy(t) + 4:.1f}" text-anchor="{anchor}">{t:.{y_dec}f}</text>')
        for i, k in enumerate(keys):
            color = SERIES_COLORS.get(k, OTHER_COLORS[i % len(OTHER_COLORS)])
            dash = ' stroke-dasharray="5 3"' if side == "right" else ""
            pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in series[k])
            parts.append(f'<polyline class="series" data-series="{_e(k)}" stroke="{color}"{dash} points="{pts}"/>')
            parts.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"><title>{_e(k)} = '
                         f'{y:.4g} at {_e(x_key)} {10 ** x if log_x else x:g}</title></circle>' for x, y in series[k])
    legend_x = M_LEFT
    for i, k in enumerate(series):
        color = SERIES_COLORS.get(k, OTHER_COLORS[i % len(OTHER_COLORS)])
        parts.append(f'<rect x="{legend_x}" y="{M_TOP - 16}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{legend_x + 14}" y="{M_TOP - 7}">{_e(k)}{" (right)" if "loss" in k else ""}</text>')
        legend_x += 26 + 7 * len(k) + (42 if "loss" in k else 0)
    title = title or f"{node_label(node)}: learning curve"
    return (f'<svg class="curve" data-node="{_e(node.get("id"))}" '
            f'width="{CHART_W}" height="{CHART_H}" viewBox="0 0 {CHART_W} {CHART_H}" role="img" '
            f'aria-label="{_e(title)}"><title>{_e(title)}</title>{"".join(parts)}</svg>')


def _curves(nodes: list[Mapping[str, Any]]) -> str:
    charts = []
    for n in nodes:
        found = _curve_series(n.get("curve"))
        if found:
            charts.append(f'<figure><figcaption><strong>{_e(node_label(n))}</strong></figcaption>'
                          f"{chart_svg(n, *found)}</figure>")
    body = f'<div class="charts">{"".join(charts)}</div>' if charts else '<p class="empty">No learning curves.</p>'
    return f'<section id="curves"><h2>Learning curves</h2>{body}</section>'


def _heatmap_svg(confusions: list[Mapping[str, Any]]) -> str:
    labels: list[str] = []
    for c in confusions:
        for lab in (c.get("label"), c.get("pred")):
            if lab is not None and str(lab) not in labels and len(labels) < HEATMAP_LABELS:
                labels.append(str(lab))
    counts: dict[tuple[str, str], float] = {}
    for c in confusions:
        key = (str(c.get("label")), str(c.get("pred")))
        if key[0] in labels and key[1] in labels and _is_num(c.get("count")):
            counts[key] = counts.get(key, 0) + c["count"]
    if not counts:
        return ""
    cell, left, top = 26, 170, 120
    peak = max(counts.values()) or 1
    parts = []
    for i, lab in enumerate(labels):
        y, x = top + i * cell, left + i * cell
        parts.append(f'<text x="{left - 6}" y="{y + cell / 2 + 4}" text-anchor="end">{_e(_clip(lab, 24))}'
                     f"<title>{_e(lab)}</title></text>")
        parts.append(f'<text transform="translate({x + cell / 2 + 4},{top - 6}) rotate(-50)">{_e(_clip(lab, 22))}'
                     f"<title>{_e(lab)}</title></text>")
    for i, gold in enumerate(labels):
        for j, pred in enumerate(labels):
            n = counts.get((gold, pred), 0)
            fill = "#eaeef2" if i == j else f"rgba(207,34,46,{0.08 + 0.92 * n / peak:.3f})" if n else "#fff"
            parts.append(f'<rect x="{left + j * cell}" y="{top + i * cell}" width="{cell - 1}" height="{cell - 1}" '
                         f'fill="{fill}" stroke="#eaeef2"><title>{_e(gold)} → {_e(pred)}: {n:g}</title></rect>')
            if n:
                parts.append(f'<text x="{left + j * cell + cell / 2}" y="{top + i * cell + cell / 2 + 4}" '
                             f'text-anchor="middle">{n:g}</text>')
    w, h = left + len(labels) * cell + 110, top + len(labels) * cell + 22  # +110: the slanted column labels
    parts.append(f'<text x="{left}" y="{h - 4}">rows: gold · columns: predicted</text>')
    return (f'<svg class="heatmap" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" role="img" aria-label="confusion heatmap">{"".join(parts)}</svg>')


def _family(view: Mapping[str, Any]) -> str:
    run = view.get("run")
    return str(run.get("family") or "classification") if isinstance(run, Mapping) else "classification"


def _confusions(view: Mapping[str, Any]) -> str:
    confusions = [c for c in (view.get("confusions") or []) if isinstance(c, Mapping)][:TOP_CONFUSIONS]
    if not confusions:
        return '<section id="confusions"><h2>Top confusions</h2><p class="empty">No confusions recorded.</p></section>'
    rows = "".join(f'<tr class="confusion"><td>{_e(c.get("label"))}</td><td>{_e(c.get("pred"))}</td>'
                   f'<td class="num">{_e(c.get("count"))}</td></tr>' for c in confusions)
    table = (f'<table class="confusions"><thead><tr><th>gold</th><th>predicted</th><th>count</th></tr></thead>'
             f"<tbody>{rows}</tbody></table>")
    what = "Top type confusions" if _family(view) == "extraction" else "Top confusions"
    return (f'<section id="confusions"><h2>{what} (winner, eval set)</h2><div class="pair">'
            f'{table}<div class="scroll">{_heatmap_svg(confusions)}</div></div></section>')


def _per_class(view: Mapping[str, Any]) -> str:
    per_class = {k: v for k, v in (view.get("per_class") or {}).items() if isinstance(v, Mapping)}
    if not per_class:
        return '<section id="per-class"><h2>Worst classes</h2><p class="empty">No per-class scores.</p></section>'
    worst = sorted(per_class.items(), key=lambda kv: (kv[1].get("f1") if _is_num(kv[1].get("f1")) else 2.0,
                                                      -(kv[1].get("support") or 0), str(kv[0])))[:WORST_CLASSES]
    rows = "".join(f'<tr class="class-row"><td>{_e(lab)}</td>'
                   + "".join(f'<td class="num">{_num(m.get(k))}</td>' for k in ("precision", "recall", "f1"))
                   + f'<td class="num">{_e(m.get("support", "—"))}</td></tr>' for lab, m in worst)
    what = "entity types" if _family(view) == "extraction" else "classes"
    return (f'<section id="per-class"><h2>Worst {len(worst)} of {len(per_class)} {what} (winner, eval set)</h2>'
            f'<table class="per-class"><thead><tr><th>label</th><th>precision</th><th>recall</th><th>F1</th>'
            f"<th>support</th></tr></thead><tbody>{rows}</tbody></table></section>")


def _findings(view: Mapping[str, Any], nodes: list[Mapping[str, Any]]) -> str:
    findings = [f for f in (view.get("findings") or []) if isinstance(f, Mapping)]
    if not findings:
        return '<section id="findings"><h2>Findings</h2><p class="empty">No findings.</p></section>'
    names = {n.get("id"): node_label(n) for n in nodes}
    findings.sort(key=lambda f: -f["severity"] if _is_num(f.get("severity")) else math.inf)
    rows = []
    for f in findings:
        labels = (f.get("target") or {}).get("labels") if isinstance(f.get("target"), Mapping) else None
        target = f'<br><small>{_e(", ".join(map(str, labels)))}</small>' if labels else ""
        node = names.get(f.get("node_id"), f.get("node_id"))
        rows.append(f'<tr class="finding" data-kind="{_e(f.get("kind"))}"><td>{_e(node)}</td><td>{_e(f.get("kind"))}'
                    f'</td><td>{_e(f.get("summary"))}{target}</td><td class="num">{_num(f.get("severity"))}</td>'
                    f'<td>{_e(", ".join(map(str, f.get("suggests") or [])))}</td></tr>')
    return (f'<section id="findings"><h2>Findings</h2><table class="findings"><thead><tr><th>node</th><th>kind</th>'
            f'<th>summary</th><th>severity</th><th>suggests</th></tr></thead><tbody>{"".join(rows)}</tbody>'
            f"</table></section>")


def _decisions(view: Mapping[str, Any]) -> str:
    decisions = [d for d in (view.get("decisions") or []) if isinstance(d, Mapping)]
    if not decisions:
        return '<section id="decisions"><h2>Decisions</h2><p class="empty">No decisions recorded.</p></section>'
    items = []
    for d in decisions:
        data = ""
        if d.get("data"):
            dumped = _clip(json.dumps(d["data"], indent=1, sort_keys=True, default=str), DECISION_DATA_CHARS)
            data = f"<details><summary>data</summary><pre>{_e(dumped)}</pre></details>"
        items.append(f'<li class="decision" data-kind="{_e(d.get("kind"))}"><time>{_e(d.get("at"))}</time>'
                     f'<span class="kind">{_e(d.get("kind"))}</span>{_e(d.get("reason"))}{data}</li>')
    return f'<section id="decisions"><h2>Decisions</h2><ol class="timeline">{"".join(items)}</ol></section>'


# ------------------------------------------------------------------------------------------------ public
def render_sections(view: Mapping[str, Any]) -> str:
    """The sections of a run's page (header, graph, curves, score against speed, confusions, per class,
    findings, decisions) as
    one HTML fragment: the body of :func:`render_html`, and what the dashboard's run page embeds."""
    run = view.get("run") or {}
    metric = str(run.get("primary_metric") or "accuracy")
    nodes = [n for n in (view.get("nodes") or []) if isinstance(n, Mapping)]
    return "".join([_header(view, nodes, metric), _graph(nodes, metric), _curves(nodes),
                    tradeoff_section(nodes, metric), _confusions(view), _per_class(view), _findings(view, nodes),
                    _decisions(view)])


def render_html(view: Mapping[str, Any]) -> str:
    """One self-contained HTML page for a search run.

    Args:
        view: the run's view dict (see the module docstring); missing or empty parts render as a note.

    Returns:
        The page as a string: inline CSS and SVG only, no script and no external resource.
    """
    run = view.get("run") or {}
    title = f"adaptloop run {run.get('id', '?')} — {run.get('task') or 'search'}"
    body = render_sections(view)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>{body}</main></body></html>\n")


def write_report(view: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Render ``view`` and write it to ``path`` as UTF-8, atomically (temp file in the same folder, then rename).

    Returns:
        The path written.
    """
    path = Path(path)
    text = render_html(view)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a report is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
