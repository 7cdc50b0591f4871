"""The HTTP API: serve the ``production`` model, trace every inference, take feedback.

    POST /v1/predict          {"inputs": [...]} → outputs, scores and trace ids (micro-batched)
    POST /v1/chat/completions OpenAI-compatible chat (generation models; "stream": true for SSE)
    POST /v1/feedback         {"trace_id", "label"?, "verdict"?, "source"?}
    GET  /healthz             model version, trace backlog
    GET  /metrics             Prometheus text
    POST /v1/admin/promote    {"version": "v4"}  (Authorization: Bearer <[serve] admin_token>)
    POST /v1/admin/rollback
    GET  /  (and /runs/{id}, /models, /traffic, /task)  the dashboard (``serve.dashboard``)

Traces are written by ``serve.traces.TraceWriter`` off the request path. The model is hot
swapped when ``production`` moves — by the admin endpoints or by any other process (an
``adaptloop improve`` promotion), which a watcher notices within ``POLL_S`` — without
dropping a request (``serve.batching``). Oversized inputs get 413, malformed bodies 422,
and a failure inside the model 503; never a 500.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field, model_validator

from adaptloop.agent.predict import predictor
from adaptloop.config import ServeSettings
from adaptloop.data.spans import check_spans
from adaptloop.data.traces import has_nul
from adaptloop.errors import NotFoundError, WorkspaceError
from adaptloop.serve.batching import MicroBatcher
from adaptloop.serve.chat import add_chat_routes
from adaptloop.serve.dashboard import PAGES, add_dashboard
from adaptloop.serve.traces import TraceWriter
from adaptloop.store import registry
from adaptloop.store.db import Task, TraceRow
from adaptloop.types import TaskSpec
from adaptloop.workspace import Workspace

POLL_S = 1.0  # how often the server checks whether `production` moved
log = logging.getLogger(__name__)


class _Text(BaseModel):
    """A body whose every string must be storable text: UTF-8 encodable (JSON's ``"\\ud800"`` is not)."""

    @model_validator(mode="after")
    def _utf8(self):
        body = self.model_dump()
        try:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("the body holds text that is not valid Unicode (a lone surrogate such as "
                             "\\ud800); send UTF-8 text") from None
        if has_nul(body):
            raise ValueError("the body holds a NUL character (\\u0000), which no store keeps; remove it")
        return self


class PredictIn(_Text):
    inputs: list[str] | None = Field(None, description="Texts to predict on (a batch).")
    input: str | None = Field(None, description="A single text (instead of inputs).")
    meta: dict[str, Any] | None = Field(None, description="Kept with every trace of this request.")


class FeedbackIn(_Text):
    trace_id: str = Field(..., max_length=64)
    label: str | None = Field(None, max_length=200, description="The corrected (or confirmed) label.")
    entities: list[dict[str, Any]] | None = Field(
        None, max_length=1000, description="Extraction: the corrected entities [{start, end, label}, ...]; [] for "
                                           "none.")
    verdict: Literal["correct", "wrong"] | None = None
    source: str | None = Field(None, max_length=200, description="Who says so (a user id, a reviewer, a system).")


class PromoteIn(_Text):
    version: str = Field(..., description="A model version, e.g. v4.", max_length=40)
    reason: str | None = Field(None, max_length=500)


class ModelSlot:
    """The production model and its version; ``refresh`` swaps in a new one atomically."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.version_id: int | None = None
        self.model: Any = None
        self.task_id: int | None = None
        self.spec: TaskSpec | None = None  # the served model's task: what feedback may say
        self.artifact: str | None = None
        self.precision: str | None = None  # the ONNX export it runs through (int8 / int8-mixed / fp32), None: torch
        self._lock = threading.Lock()
        self.swaps = 0

    def current(self) -> tuple[str, Any]:
        with self._lock:
            return f"v{self.version_id}", self.model

    def refresh(self) -> bool:
        """Load the version ``production`` points at if it is not the one served, or the served one
        again when an export of it has passed parity since it was loaded (`adaptloop export` while
        serving, or after an improve cycle's promotion). True on a swap."""
        from adaptloop.agent.export import attach_export, served_precision
        from adaptloop.train import load_trained

        target = registry.alias_target(self.ws.store, "production")
        if target is None or (target == self.version_id and (
                self.artifact is None or served_precision(self.ws, self.artifact) == self.precision)):
            return False
        mv = registry.resolve(self.ws.store, f"v{target}")
        model = load_trained(self.ws.artifacts.path(mv.artifact))  # loaded before the swap: no gap
        precision = served_precision(self.ws, mv.artifact)
        model = attach_export(self.ws, mv.artifact, model)  # its ONNX export, when one passed parity
        spec = TaskSpec.from_dict(self.ws.store.get(Task, mv.task_id).spec)
        with self._lock:
            swapped = self.version_id is not None
            self.version_id, self.model, self.task_id, self.spec = mv.id, model, mv.task_id, spec
            self.artifact, self.precision = mv.artifact, precision
        self.swaps += swapped
        return True


def forward(model: Any, texts: list[str]) -> list[dict[str, Any]]:
    """One forward pass: a label and score per text (entities for an extraction model, the
    completion for a generation model)."""
    return predictor(model).answer(texts)


def _metrics():
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    reg = CollectorRegistry()
    return reg, {
        "requests": Counter("adaptloop_requests_total", "HTTP requests", ["endpoint", "status"], registry=reg),
        "latency": Histogram("adaptloop_request_seconds", "Request latency", ["endpoint"], registry=reg,
                             buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)),
        "predictions": Counter("adaptloop_predictions_total", "Inputs predicted", registry=reg),
        "batch": Histogram("adaptloop_batch_size", "Inputs per forward pass", registry=reg,
                           buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)),
        "forward": Histogram("adaptloop_forward_seconds", "Seconds per forward pass (tokenization included)",
                             registry=reg, buckets=(.002, .005, .01, .02, .05, .1, .2, .5, 1, 2)),
        "queued": Histogram("adaptloop_queue_seconds", "Seconds a request waited for its forward pass to start",
                            registry=reg, buckets=(.001, .002, .005, .01, .02, .05, .1, .2, .5, 1)),
        "feedback": Counter("adaptloop_feedback_total", "Feedback received", registry=reg),
        "backlog": Gauge("adaptloop_trace_backlog", "Traces waiting to be written", registry=reg),
        "written": Gauge("adaptloop_traces_written", "Traces written by this server", registry=reg),
        "version": Gauge("adaptloop_model_version", "Served model version", registry=reg),
        "swaps": Gauge("adaptloop_model_swaps", "Hot swaps since start", registry=reg),
    }


@dataclass
class _Server:
    """What the routes of one app share: the workspace, its ``[serve]`` settings, the served model, the
    micro-batcher, the Prometheus metrics and (while the app runs) the trace writer."""

    ws: Workspace
    cfg: ServeSettings
    slot: ModelSlot
    batcher: MicroBatcher
    reg: Any
    m: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def writer(self) -> TraceWriter:
        return self.state["writer"]


def create_app(ws: Workspace) -> FastAPI:
    """The FastAPI app for a workspace (its ``[serve]`` settings)."""
    cfg = ws.settings.serve
    slot = ModelSlot(ws)
    reg, m = _metrics()

    def on_batch(n: int, seconds: float, queued: list[float]) -> None:
        m["batch"].observe(n)
        m["predictions"].inc(n)
        m["forward"].observe(seconds)
        for q in queued:
            m["queued"].observe(q)

    batcher = MicroBatcher(forward, slot.current, max_batch=cfg.max_batch, max_wait_ms=cfg.max_wait_ms,
                           on_batch=on_batch)
    s = _Server(ws, cfg, slot, batcher, reg, m)
    app = FastAPI(title="adaptloop", lifespan=_lifespan(s),
                  description="Predictions from the production model; every one is traced.")
    app.state.slot = slot
    _add_guards(app, s)
    _add_predict_routes(app, s)
    _add_status_routes(app, s)
    add_chat_routes(app, slot=slot, batcher=batcher, writer=lambda: s.state["writer"], max_chars=cfg.max_chars)
    _add_admin_routes(app, ws, cfg, refresh=slot.refresh, serving=lambda: slot.current()[0])
    add_dashboard(app, ws)
    return app


def create_ui_app(ws: Workspace) -> FastAPI:
    """The dashboard without a model (``adaptloop ui``): every page, and the admin endpoints (they move
    ``production``; a server elsewhere follows within ``POLL_S``)."""
    app = FastAPI(title="adaptloop dashboard", docs_url=None, redoc_url=None)
    _add_admin_routes(app, ws, ws.settings.serve, refresh=lambda: False, serving=lambda: None)
    add_dashboard(app, ws)
    return app


def _lifespan(s: _Server):
    """Load the production model, start the trace writer, the batcher and the watcher that hot-swaps the
    model when ``production`` moves; stop them in reverse when the app shuts down."""

    async def watch() -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(POLL_S)
            try:
                await loop.run_in_executor(None, s.slot.refresh)
            except Exception:  # a half-written registry or a busy database: try again next tick
                continue

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if not s.slot.refresh():
            raise NotFoundError("no production model to serve; train one with `adaptloop new`")
        s.state["writer"] = TraceWriter(s.ws.store, flush_ms=s.cfg.trace_flush_ms,
                                        spool=s.ws.root / ".adaptloop" / "spool")
        await s.batcher.start()
        watcher = asyncio.create_task(watch())
        try:
            yield
        finally:
            watcher.cancel()
            await s.batcher.stop()
            s.state["writer"].close()

    return lifespan


class _Body:
    """ASGI wrapper: a request body is read whole before the app sees it, and refused with 413 past
    ``limit`` bytes whatever ``Content-Length`` says (a chunked body has none); a JSON endpoint's
    body is read as JSON whatever its content type (``curl -d`` sends a form type)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                await self._refuse(send)
                return
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        done = False

        async def replay() -> dict[str, Any]:
            nonlocal done
            if done:
                return await receive()
            done = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app({**scope, "headers": headers}, replay, send)

    async def _refuse(self, send: Callable) -> None:
        blob = json.dumps({"error": f"the body is over the {self.limit}-byte limit; send fewer or shorter inputs "
                                    "per request"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(blob)).encode())]})
        await send({"type": "http.response.body", "body": blob})


class _Observe:
    """ASGI wrapper (plain ASGI: a ``BaseHTTPMiddleware`` costs more per request than the model's share of
    it): request metrics by endpoint and status, and a 503 — never a 500 — when the model or the store
    fails, logged with a reference and its cause kept out of the reply."""

    def __init__(self, app: Any, paths: set[str], m: dict[str, Any]) -> None:
        self.app, self.paths, self.m = app, paths, m

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0, status, started = time.perf_counter(), 500, False

        async def watch(message: dict[str, Any]) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:  # the model or the store failed; the log says why
            ref = uuid.uuid4().hex[:12]
            log.exception("503 on %s %s (ref %s)", scope.get("method"), scope.get("path"), ref)
            if started:  # the reply is half sent: nothing else can be said on this connection
                return
            status = 503
            await JSONResponse({"error": f"temporarily unavailable: the model or the store failed (ref {ref} in "
                                         "the server log); retry later"}, status_code=503)(scope, receive, send)
        finally:
            path = scope.get("path", "")
            series = path if path in self.paths else "(other)"
            self.m["requests"].labels(series, str(status)).inc()
            self.m["latency"].labels(series).observe(time.perf_counter() - t0)


def _add_guards(app: FastAPI, s: _Server) -> None:
    """Request metrics (by endpoint, unknown paths as one series), 413 for an oversized body (``_Body``), 503
    (never a 500) when the model or the store fails — logged, its cause kept out of the reply — and 422
    with the first problem named for a malformed body."""
    cfg, m = s.cfg, s.m
    paths = {"/v1/predict", "/v1/feedback", "/v1/chat/completions", "/healthz", "/metrics", "/v1/admin/promote",
             "/v1/admin/rollback", "/docs", "/openapi.json", "/ui/stamp", "/ui/traces", *PAGES}

    # inside ``_Observe`` (added later, so outside): its refusals are counted like any other reply
    app.add_middleware(_Body, limit=cfg.max_inputs * (cfg.max_chars + 16) + 4096)
    app.add_middleware(_Observe, paths=paths, m=m)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError):
        # never echo the input back: it may be huge, or not encodable at all
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": e.get("type", "")}
                  for e in exc.errors()] or [{"loc": [], "msg": "invalid body", "type": ""}]
        where = ".".join(p for p in errors[0]["loc"] if p != "body")
        return JSONResponse({"error": f"{where or 'body'}: {errors[0]['msg']}", "detail": errors}, status_code=422)


def _add_predict_routes(app: FastAPI, s: _Server) -> None:
    """``POST /v1/predict`` (micro-batched, every output traced) and ``POST /v1/feedback``."""
    cfg, ws = s.cfg, s.ws

    @app.post("/v1/predict")
    async def predict(body: PredictIn) -> dict[str, Any]:
        t0 = time.perf_counter()
        texts = body.inputs if body.inputs is not None else ([body.input] if body.input is not None else None)
        if not texts:
            raise HTTPException(422, "send {\"inputs\": [text, ...]} or {\"input\": text}")
        if len(texts) > cfg.max_inputs:
            raise HTTPException(413, f"{len(texts)} inputs; at most {cfg.max_inputs} per request")
        for t in texts:
            if len(t) > cfg.max_chars:
                raise HTTPException(413, f"an input has {len(t)} characters; at most {cfg.max_chars}")
            if not t.strip():
                raise HTTPException(422, "inputs must be non-empty text")
        version, outputs = await s.batcher.submit(texts)
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        meta = {"latency_ms": round(1000 * (time.perf_counter() - t0), 1), **(body.meta or {})}  # the caller's wins
        rows = [{"id": uuid.uuid4().hex, "ts": now, "task_id": s.slot.task_id, "model_version": version,
                 "input": t, "output": o, "meta": meta, "origin": "serve"} for t, o in zip(texts, outputs)]
        s.writer.add(rows)
        return {"model_version": version,
                "outputs": [{"trace_id": r["id"], **o} for r, o in zip(rows, outputs)]}

    @app.post("/v1/feedback")
    async def feedback(body: FeedbackIn) -> dict[str, Any]:
        if body.label is None and body.verdict is None and body.entities is None:
            raise HTTPException(422, "feedback needs a 'label' (the correct one), 'entities' and/or a 'verdict'")
        writer = s.writer
        if not writer.is_pending(body.trace_id):
            known = await asyncio.get_running_loop().run_in_executor(None, ws.store.get, TraceRow, body.trace_id)
            if known is None:
                raise HTTPException(404, f"no trace {body.trace_id}; use a trace_id from /v1/predict")
        wrong = _feedback_problem(s.slot.spec, body)
        if wrong:
            raise HTTPException(422, wrong)
        spans = None
        if body.entities is not None:
            row = await asyncio.get_running_loop().run_in_executor(None, writer.text_of, ws.store, body.trace_id)
            spans, why = check_spans(row or "", body.entities) if row is not None else ([], "")
            if why:
                raise HTTPException(422, f"feedback 'entities': {why}")
            spans = [list(sp) for sp in spans]
        writer.feedback(body.trace_id, body.label, body.verdict, body.source, spans)
        s.m["feedback"].inc()
        return {"trace_id": body.trace_id, "accepted": True}


def _feedback_problem(spec: TaskSpec | None, body: FeedbackIn) -> str:
    """What is wrong with feedback for the served task ('' when nothing): a label that is not one of its
    classes, entities for a classifier, a label for an entity extractor, entities of unknown types."""
    if spec is None or spec.family == "generation":
        return ""
    if spec.family == "classification":
        if body.entities is not None:
            return "this task classifies text: send 'label' (one of its classes), not 'entities'"
        if body.label is not None and body.label not in spec.labels:
            shown = ", ".join(spec.labels[:5]) + (", ..." if len(spec.labels) > 5 else "")
            return f"label '{body.label[:80]}' is not a class of this task; it has {len(spec.labels)}: {shown}"
        return ""
    if body.label is not None:
        return "this task extracts entities: send 'entities' [{start, end, label}, ...], not 'label'"
    unknown = sorted({str(e.get("label")) for e in body.entities or () if e.get("label") not in spec.labels})
    if unknown:
        return (f"entity type(s) {', '.join(u[:40] for u in unknown[:5])} are not types of this task; it has "
                f"{', '.join(spec.labels)}")
    return ""


def _add_status_routes(app: FastAPI, s: _Server) -> None:
    """``GET /healthz`` (model version, trace backlog, swaps) and ``GET /metrics`` (Prometheus text)."""

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        version, _ = s.slot.current()
        return {"status": "ok", "model_version": version, "trace_backlog": s.writer.backlog,
                "swaps": s.slot.swaps}

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        writer, m = s.writer, s.m
        m["backlog"].set(writer.backlog)
        m["written"].set(writer.written)
        m["version"].set(s.slot.version_id or 0)
        m["swaps"].set(s.slot.swaps)
        return PlainTextResponse(generate_latest(s.reg).decode(), media_type=CONTENT_TYPE_LATEST)


def _add_admin_routes(app: FastAPI, ws: Workspace, cfg: ServeSettings, *, refresh: Callable[[], Any],
                      serving: Callable[[], str | None]) -> None:
    """``POST /v1/admin/promote`` and ``/v1/admin/rollback``, behind ``Bearer <[serve] admin_token>``; the
    served model follows at once (``refresh``; ``serving``: the version served after it)."""

    def admin(authorization: str | None) -> None:
        if not cfg.admin_token:
            raise HTTPException(403, "admin endpoints are off; set [serve] admin_token in adaptloop.toml")
        scheme, _, given = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip(), cfg.admin_token):
            raise HTTPException(401, "send 'Authorization: Bearer <[serve] admin_token from adaptloop.toml>'")

    @app.post("/v1/admin/promote")
    async def promote(body: PromoteIn, authorization: str | None = Header(None)) -> dict[str, Any]:
        admin(authorization)
        try:
            mv = registry.resolve(ws.store, body.version)
        except NotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        registry.force_promote(ws.store, mv.id, who="admin over HTTP", why=body.reason or "promoted by an admin")
        await asyncio.get_running_loop().run_in_executor(None, refresh)
        return {"production": f"v{mv.id}", "serving": serving()}

    @app.post("/v1/admin/rollback")
    async def rollback_(authorization: str | None = Header(None)) -> dict[str, Any]:
        admin(authorization)
        try:
            result = registry.rollback(ws.store, reason="rolled back by an admin", who="admin over HTTP")
        except NotFoundError as exc:
            raise HTTPException(409, str(exc)) from None
        await asyncio.get_running_loop().run_in_executor(None, refresh)
        return {**result, "serving": serving()}


def run_server(ws: Workspace, host: str | None = None, port: int | None = None, *,
               on_start: Callable[[Path, str, int], None] | None = None) -> None:
    """Serve ``production`` with uvicorn until Ctrl-C (``host``/``port`` default to ``[serve]``);
    ``on_start(workspace root, host, port)`` is called just before the server starts.

    Raises:
        NotFoundError: no model is in production (said before the server starts).
    """
    registry.resolve(ws.store, "production")  # a clear error before the server starts
    _run(create_app, ws, host, port, on_start)


def run_ui(ws: Workspace, host: str | None = None, port: int | None = None, *,
           on_start: Callable[[Path, str, int], None] | None = None) -> None:
    """Serve the dashboard alone (no model) with uvicorn until Ctrl-C; like :func:`run_server` otherwise."""
    _run(create_ui_app, ws, host, port, on_start)


def _run(make: Callable[[Workspace], FastAPI], ws: Workspace, host: str | None, port: int | None,
         on_start: Callable[[Path, str, int], None] | None) -> None:
    import uvicorn

    cfg = ws.settings.serve
    host, port = host or cfg.host, port or cfg.port
    _check_port(host, port)
    if on_start is not None:
        on_start(ws.root, host, port)
    uvicorn.run(make(ws), host=host, port=port, log_level="warning")


@contextmanager
def in_background(app: FastAPI, host: str = "127.0.0.1") -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on a free port of ``host``; yields its base URL (``http://host:port``)
    and stops the server on exit. For tests, scripts and notebooks that need a real HTTP server."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="adaptloop-http", daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if not thread.is_alive() or time.monotonic() - t0 > 60:
            server.should_exit = True
            raise WorkspaceError("the HTTP server did not start; its log says why")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _check_port(host: str, port: int) -> None:
    """Raises WorkspaceError when ``host:port`` cannot be bound (taken, or not an address of this machine)."""
    import socket

    if not 1 <= port <= 65535:
        raise WorkspaceError(f"port {port} is out of range; use 1-65535 (--port or [serve] port)")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        raise WorkspaceError(f"cannot serve on {host}:{port} ({exc.strerror or exc}); stop what uses the port or "
                             "pick another with --port") from None
