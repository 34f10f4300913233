"""Admission: past `max_inflight_requests`, a POST /classify is refused with 429 + Retry-After before
routing, validation or reading its body, so refusing stays far cheaper than serving. Under overload
the event loop spends its time on the requests it accepted, not on turning the others away.

An ASGI middleware rather than a check inside the route: by the time a route runs, the router,
FastAPI's dependency injection and, on refusal, the exception machinery have all run; here a
refusal is one prebuilt response.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import Overloaded
from service.runtime import State

ADMITTED_PATH = "/classify"


class Admission:
    def __init__(self, app: ASGIApp, state: State, route: BaseRoute) -> None:
        self.app, self.state, self.route = app, state, route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self.state.runtime
        if scope["type"] != "http" or scope["path"] != ADMITTED_PATH or runtime is None:
            await self.app(scope, receive, send)  # not ready: the route answers 503 itself
            return
        limit = runtime.settings.max_inflight_requests
        if runtime.inflight >= limit:
            await self.refuse(scope, receive, send, runtime.inflight, limit)
            return
        runtime.inflight += 1
        try:
            with runtime.metrics.inflight.track_inprogress():
                await self.app(scope, receive, send)
        finally:
            runtime.inflight -= 1

    async def refuse(self, scope: Scope, receive: Receive, send: Send, inflight: int, limit: int) -> None:
        error = Overloaded(f"{inflight} requests in progress (max_inflight_requests={limit}); retry later", 1)
        self.state.metrics.rejections.labels(reason="inflight_limit").inc()
        scope["route"] = self.route  # the request metrics label it /classify, as the router would
        await JSONResponse(error.body(), error.status, error.headers)(scope, receive, send)
