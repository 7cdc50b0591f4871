"""The web dashboard: server-rendered pages (Jinja2) with a little JavaScript, served by ``adaptloop serve``
at ``/`` and by ``adaptloop ui`` without a model.

    GET /               overview: production, traffic, every run
    GET /runs/{id}      one run: experiment graph, learning curves, findings, decisions (live while it runs)
    GET /models         the registry as a timeline, each event with its gate and the broken examples
    GET /traffic        volume, latency, triage over time; trace table (filters); poison; taxonomy; drift
    GET /task           the spec, the frozen eval sets, data provenance
    GET /ui/traces      the trace table alone (what the filters fetch)
    GET /ui/stamp       a fingerprint of the store; pages poll it and reload their live parts when it changes

Everything it needs ships in the package (templates, CSS, JS, charts as inline SVG): no request leaves
the server. Pages are read-only; the promote and roll-back buttons call the admin endpoints, which take
``[serve] admin_token``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from adaptloop.errors import NotFoundError
from adaptloop.report import dashboard as data
from adaptloop.report.html import CSS as REPORT_CSS
from adaptloop.report.html import render_sections
from adaptloop.report.view import build_view
from adaptloop.workspace import Workspace

__all__ = ["PAGES", "add_dashboard"]

STATIC = Path(__file__).parent / "static"
PAGES = ("/", "/models", "/traffic", "/task")  # and /runs/{id}
POLL_MS = 2000  # how often an open page asks whether anything changed
VERDICT_COLORS = {"ok": "#2da44e", "fixable": "#1f6feb", "poison": "#cf222e", "out_of_scope": "#bf8700",
                  "unlabelled": "#8250df", "unjudged": "#8c959f", "unjudged_": "#8c959f"}
CHART_W, CHART_H, PAD_L, PAD_B = 720, 180, 44, 26


def _env() -> Environment:
    env = Environment(loader=PackageLoader("adaptloop.serve", "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=_when, num=_num, secs=_secs, clip=_clip, unit=_unit)
    env.globals.update(verdict_colors=VERDICT_COLORS, poll_ms=POLL_MS)
    return env


def _when(x: Any) -> str:
    return x.strftime("%Y-%m-%d %H:%M:%S") if isinstance(x, dt.datetime) else ("" if x is None else str(x))


def _num(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else "—"


def _secs(x: Any) -> str:
    if not isinstance(x, (int, float)):
        return "—"
    return f"{x:.0f} s" if x < 120 else f"{x / 60:.1f} min"


def _unit(x: Any, text: str = "") -> str:
    """A gate's label / answer in a table cell: an entity ``[start, end, type]`` as its text and type."""
    if isinstance(x, (list, tuple)) and len(x) == 3 and isinstance(x[0], int) and isinstance(x[1], int):
        return f"{text[x[0]:x[1]]} ({x[2]})"
    if isinstance(x, (list, tuple)):
        return "; ".join(_unit(e, text) for e in x) or "(none)"
    return _clip(x, 200)


def _clip(x: Any, n: int = 120) -> str:
    s = "" if x is None else str(x)
    return s if len(s) <= n else s[: n - 1] + "…"


def _axis_times(start: dt.datetime, width_s: float, n: int) -> list[tuple[float, str]]:
    """(x, label) for a few evenly spaced bucket starts."""
    step = max(1, n // 4)
    fmt = "%H:%M" if width_s * n <= 86400 else "%m-%d %H:%M"
    bar = (CHART_W - PAD_L) / n
    return [(PAD_L + i * bar, (start + dt.timedelta(seconds=i * width_s)).strftime(fmt)) for i in range(0, n, step)]


def stacked_bars(volume: dict[str, Any], series: list[str], label: str) -> Markup:
    """Stacked bars per time bucket (one colour per series), as inline SVG with a title per bar."""
    buckets = volume.get("buckets") or []
    if not buckets:
        return Markup('<p class="empty">No traces yet.</p>')
    n, top = len(buckets), max((sum(b.get(s, 0) for s in series) for b in buckets), default=0) or 1
    bar, h = (CHART_W - PAD_L) / n, CHART_H - PAD_B
    parts = [f'<svg class="chart" viewBox="0 0 {CHART_W} {CHART_H}" role="img" aria-label="{label}">',
             f'<line class="axis" x1="{PAD_L}" y1="{h}" x2="{CHART_W}" y2="{h}"/>',
             f'<text x="{PAD_L - 6}" y="12" text-anchor="end">{top}</text>',
             f'<text x="{PAD_L - 6}" y="{h}" text-anchor="end">0</text>']
    for i, b in enumerate(buckets):
        y = h
        t0 = volume["start"] + dt.timedelta(seconds=i * volume["width_s"])
        tip = f"{t0:%Y-%m-%d %H:%M}: " + ", ".join(f"{s} {b.get(s, 0)}" for s in series if b.get(s))
        parts.append(f'<g class="bar"><title>{Markup.escape(tip)}</title>')
        for s in series:
            v = b.get(s, 0)
            if not v:
                continue
            hh = v / top * (h - 4)
            y -= hh
            parts.append(f'<rect x="{PAD_L + i * bar + 0.5:.1f}" y="{y:.1f}" width="{max(bar - 1, 0.5):.1f}" '
                         f'height="{hh:.1f}" fill="{VERDICT_COLORS.get(s, "#1f6feb")}"/>')
        parts.append("</g>")
    for x, t in _axis_times(volume["start"], volume["width_s"], n):
        parts.append(f'<text x="{x:.1f}" y="{CHART_H - 8}">{t}</text>')
    return Markup("".join(parts) + "</svg>")


def latency_lines(latency: dict[str, Any]) -> Markup:
    """p50 and p95 latency per time bucket, as inline SVG polylines."""
    buckets = latency.get("buckets") or []
    pts = [(i, b) for i, b in enumerate(buckets) if b]
    if not pts:
        return Markup('<p class="empty">No latency recorded (traces written by <code>adaptloop serve</code> carry '
                      "it).</p>")
    n, top = len(buckets), max(b["p95"] for _, b in pts) or 1.0
    bar, h = (CHART_W - PAD_L) / n, CHART_H - PAD_B
    parts = [f'<svg class="chart" viewBox="0 0 {CHART_W} {CHART_H}" role="img" aria-label="latency p50 and p95">',
             f'<line class="axis" x1="{PAD_L}" y1="{h}" x2="{CHART_W}" y2="{h}"/>',
             f'<text x="{PAD_L - 6}" y="12" text-anchor="end">{top:.0f} ms</text>',
             f'<text x="{PAD_L - 6}" y="{h}" text-anchor="end">0</text>']
    for key, color in (("p95", "#cf222e"), ("p50", "#1f6feb")):
        xy = " ".join(f"{PAD_L + (i + 0.5) * bar:.1f},{h - b[key] / top * (h - 4):.1f}" for i, b in pts)
        parts.append(f'<polyline class="{key}" points="{xy}" fill="none" stroke="{color}" stroke-width="2"/>')
    for x, t in _axis_times(latency["start"], latency["width_s"], n):
        parts.append(f'<text x="{x:.1f}" y="{CHART_H - 8}">{t}</text>')
    return Markup("".join(parts) + "</svg>")


class _Pages:
    """Render one page: a template with the workspace's data, off the event loop (the store is blocking)."""

    def __init__(self, ws: Workspace, admin: bool) -> None:
        self.ws, self.admin, self.env = ws, admin, _env()

    def render(self, name: str, **ctx: Any) -> str:
        return self.env.get_template(name).render(admin=self.admin, **ctx)

    def page(self, name: str, read: Callable[[], dict[str, Any]]) -> str:
        """A whole page, stamped with the store's fingerprint taken before its data was read: a change that
        lands while it renders makes the page's next poll reload it."""
        stamp = data.stamp(self.ws)
        return self.render(name, stamp=stamp, **read())

    def overview(self) -> str:
        return self.page("overview.html", lambda: dict(
            page="overview", runs=data.runs_overview(self.ws), summary=self.ws.store.trace_summary(),
            models=data.models_timeline(self.ws)))

    def run(self, run_id: int) -> str:
        def read() -> dict[str, Any]:
            view = build_view(self.ws, run_id)
            live = view["run"]["status"] == "running" or any(n["status"] == "running" for n in view["nodes"])
            nodes = [{**n, "score": (n["dev"] or {}).get(view["run"]["primary_metric"])} for n in view["nodes"]]
            return dict(page="overview", view=view, nodes=nodes, live=live, sections=Markup(render_sections(view)))

        return self.page("run.html", read)

    def models(self) -> str:
        return self.page("models.html", lambda: dict(page="models", models=data.models_timeline(self.ws)))

    def traffic(self, f: data.TraceFilter) -> str:
        def read() -> dict[str, Any]:
            t = data.traffic_overview(self.ws)
            series = [v for v in ("ok", "fixable", "poison", "out_of_scope", "unlabelled", "unjudged")
                      if t["verdicts"].get(v)]
            return dict(page="traffic", t=t, f=f, table=data.trace_table(self.ws, f), series=series,
                        volume_svg=stacked_bars(t["volume"], series, "traces per interval by triage verdict"),
                        feedback_svg=stacked_bars(t["volume"], ["feedback"], "feedback per interval"),
                        latency_svg=latency_lines(t["latency"]))

        return self.page("traffic.html", read)

    def traces(self, f: data.TraceFilter) -> str:
        return self.render("traces.html", f=f, table=data.trace_table(self.ws, f))

    def task(self) -> str:
        return self.page("task.html", lambda: dict(page="task", tasks=data.task_overview(self.ws)))


def add_dashboard(app: FastAPI, ws: Workspace) -> None:
    """Mount the dashboard's pages, its fragments and its static files on ``app``."""
    pages = _Pages(ws, admin=bool(ws.settings.serve.admin_token))
    router = APIRouter(include_in_schema=False)

    async def html(render: Callable[[], str]) -> HTMLResponse:
        try:
            body = await asyncio.get_running_loop().run_in_executor(None, render)
        except NotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        return HTMLResponse(body, headers={"Cache-Control": "no-store"})

    def trace_filter(verdict: str = "", kind: str = "", source: str = "", version: str = "", q: str = "",
                     page: int = Query(0, ge=0, le=1_000_000)) -> data.TraceFilter:
        def clean(text: str, n: int) -> str:  # no NUL: PostgreSQL refuses it in a query
            return text.replace("\x00", "")[:n]

        return data.TraceFilter(verdict=clean(verdict, 40), kind=clean(kind, 60), source=clean(source, 200),
                                version=clean(version, 40), q=clean(q, 200), page=page)

    @router.get("/", response_class=HTMLResponse)
    async def overview() -> HTMLResponse:
        return await html(pages.overview)

    @router.get("/runs/{run_id}", response_class=HTMLResponse)
    async def run(run_id: int) -> HTMLResponse:
        return await html(partial(pages.run, run_id))

    @router.get("/models", response_class=HTMLResponse)
    async def models() -> HTMLResponse:
        return await html(pages.models)

    @router.get("/traffic", response_class=HTMLResponse)
    async def traffic(verdict: str = "", kind: str = "", source: str = "", version: str = "", q: str = "",
                      page: int = Query(0, ge=0, le=1_000_000)) -> HTMLResponse:
        return await html(partial(pages.traffic, trace_filter(verdict, kind, source, version, q, page)))

    @router.get("/ui/traces", response_class=HTMLResponse)
    async def traces(verdict: str = "", kind: str = "", source: str = "", version: str = "", q: str = "",
                     page: int = Query(0, ge=0, le=1_000_000)) -> HTMLResponse:
        return await html(partial(pages.traces, trace_filter(verdict, kind, source, version, q, page)))

    @router.get("/task", response_class=HTMLResponse)
    async def task() -> HTMLResponse:
        return await html(pages.task)

    @router.get("/ui/report.css")
    async def report_css() -> Response:
        return Response(REPORT_CSS, media_type="text/css", headers={"Cache-Control": "max-age=300"})

    @router.get("/ui/stamp")
    async def stamp() -> dict[str, str]:
        return {"stamp": await asyncio.get_running_loop().run_in_executor(None, data.stamp, ws)}

    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
