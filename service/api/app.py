"""The app factory: routes, one error shape, request metrics, and a lifespan that loads in the
background (so /health/live answers at once and /health/ready turns 200 once models are warm)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.access import RequestContext
from service.api.admission import ADMITTED_PATHS, Admission
from service.api.auth import RequireKeys
from service.api.error_shape import error_body
from service.api.json_response import ORJSONResponse
from service.api.openapi import install_openapi
from service.api.routes import admin, classify, docs, embeddings, health, hf, models, open_inference, ui
from service.errors import ServiceError
from service.metrics import Metrics
from service.process_stats import ProcessStats
from service.runtime import State
from service.settings import Settings

log = logging.getLogger("clipserve")
UNMETERED = {"/health/live", "/health/ready", "/metrics", "/v2/health/live", "/v2/health/ready"}
REJECTION_REASONS = {
    400: "bad_input",
    404: "not_found",
    413: "too_large",
    415: "unsupported_media",
    422: "invalid",
    429: "queue_full",
    503: "not_ready",
    504: "timeout",
}


def create_app(settings: Settings | None = None, started: int | None = None) -> FastAPI:
    """`started`: when the service started (the supervisor passes its own to every worker)."""
    state = State(settings if settings is not None else Settings())
    if started is not None:
        state.started = started

    process_stats = ProcessStats(state.metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        process_stats.gc_pauses.install()
        if state.settings.workers == 1:
            state.start()
        else:  # a worker takes connections only once it can serve them (its peers serve meanwhile)
            await state.load()
            if state.runtime is None:
                raise RuntimeError(state.error)
        sampler = asyncio.get_running_loop().create_task(
            process_stats.run(state.settings.process_metrics_interval_s)
        )
        yield
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        await state.stop()
        process_stats.gc_pauses.remove()

    app = FastAPI(
        title="clipserve",
        summary="Classify images with adapted CLIP models; hot-swap prompt checkpoints.",
        lifespan=lifespan,
        docs_url=None,  # service.api.routes.docs serves /docs and /redoc without a CDN
        redoc_url=None,
        default_response_class=ORJSONResponse,  # for routes that return plain dicts
    )
    app.state.clipserve = state
    app.state.process_stats = process_stats
    routers = (
        classify.router,
        hf.router,
        embeddings.router,
        open_inference.router,
        models.router,
        admin.router,
        health.router,
        ui.root_router,
        ui.router,
        docs.router,
    )
    for router in routers:
        app.include_router(router)
    install_error_handlers(app, state.metrics)
    install_openapi(app, state.settings)
    install_middleware(app, state, routers)
    return app


def install_middleware(app: FastAPI, state: State, routers: Sequence[APIRouter]) -> None:
    """Outermost first: request id and access log, request metrics (they see every refusal), CORS
    (preflights answered before any key check), API keys, admission (before the body is read)."""
    # From the routers themselves: this FastAPI includes them lazily, so app.router.routes holds
    # wrappers, not the routes (no prefixes are used, so their patterns match the request path).
    routes = [route for router in routers for route in router.routes if isinstance(route, APIRoute)]
    admitted = [route for route in routes if route.path in ADMITTED_PATHS and "POST" in (route.methods or ())]
    assert {route.path for route in admitted} == ADMITTED_PATHS, "an admitted path has no POST route"
    app.add_middleware(Admission, state=state, routes=admitted)
    app.add_middleware(RequireKeys, settings=state.settings)
    if state.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=state.settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Server-Timing", "Retry-After"],
        )
    app.add_middleware(RequestMetrics, metrics=state.metrics)
    app.add_middleware(RequestContext)


def error_response(
    request: Request, status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> ORJSONResponse:
    body = error_body(request.url.path, status, kind, message)  # the protocol's shape (/v2 differs)
    return ORJSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    def count(status: int) -> None:
        if status in REJECTION_REASONS:
            metrics.rejections.labels(reason=REJECTION_REASONS[status]).inc()

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> ORJSONResponse:
        count(error.status)
        return error_response(request, error.status, error.type, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> ORJSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:5]]
        count(422)
        return error_response(request, 422, "invalid", "; ".join(problems))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> ORJSONResponse:
        headers = dict(error.headers or {})
        return error_response(request, error.status_code, "http", str(error.detail), headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> ORJSONResponse:
        log.exception("internal error on %s", request.url.path)
        message = f"internal error ({type(error).__name__}); see the server log"
        return error_response(request, 500, "internal", message)


class RequestMetrics:
    """Duration and count per route template (never the raw path), status code as a label; and a
    `Server-Timing: app;dur=<ms>` header on every answer, so a client can tell time spent in the
    service from time spent on the network and in its own queues. `X-Clipserve-Worker: <pid>`
    names the worker process that answered (with --workers N they share one port)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics
        self.worker = (b"x-clipserve-worker", str(os.getpid()).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.monotonic(), 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                timing = f"app;dur={1000 * (time.monotonic() - started):.2f}".encode()
                headers = [*message.get("headers", []), (b"server-timing", timing), self.worker]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self._observe(scope, status, time.monotonic() - started)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route: Any = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        if path in UNMETERED:
            return
        self.metrics.requests.labels(route=path, code=str(status)).inc()
        self.metrics.request_duration.labels(route=path).observe(seconds)
