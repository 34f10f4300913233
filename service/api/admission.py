"""Admission: past `max_inflight_requests`, an inference request (/classify, the Hugging Face
route, /v1/embeddings, /v2 infer) is refused with 429 + Retry-After before routing, validation or
reading its body, so refusing stays far cheaper than serving. Under overload the event loop spends
its time on the requests it accepted, not on turning the others away.

An ASGI middleware rather than a check inside the route: by the time a route runs, the router,
FastAPI's dependency injection and, on refusal, the exception machinery have all run; here a
refusal is one prebuilt response. It tells admitted requests apart with the routes' own matchers
(path pattern and method), so a GET / or GET /v2/models/x is never counted.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.error_shape import error_body
from service.api.json_response import ORJSONResponse
from service.errors import Overloaded
from service.runtime import State

# Route templates of the inference routes: they share one in-flight limit.
ADMITTED_PATHS = frozenset(
    {
        "/classify",
        "/",
        "/models/{name}",
        "/v1/embeddings",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    }
)


class Admission:
    def __init__(self, app: ASGIApp, state: State, routes: Sequence[BaseRoute]) -> None:
        self.app, self.state, self.routes = app, state, tuple(routes)

    def admitted_route(self, scope: Scope) -> BaseRoute | None:
        for route in self.routes:
            if route.matches(scope)[0] is Match.FULL:
                return route
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self.state.runtime
        route = self.admitted_route(scope) if scope["type"] == "http" and runtime is not None else None
        if route is None or runtime is None:
            await self.app(scope, receive, send)  # not ready: the route answers 503 itself
            return
        limit = runtime.settings.max_inflight_requests
        if runtime.inflight >= limit:
            await self.refuse(scope, receive, send, route, runtime.inflight, limit)
            return
        runtime.inflight += 1
        try:
            with runtime.metrics.inflight.track_inprogress():
                await self.app(scope, receive, send)
        finally:
            runtime.inflight -= 1

    async def refuse(
        self, scope: Scope, receive: Receive, send: Send, route: BaseRoute, inflight: int, limit: int
    ) -> None:
        error = Overloaded(f"{inflight} requests in progress (max_inflight_requests={limit}); retry later", 1)
        self.state.metrics.rejections.labels(reason="inflight_limit").inc()
        scope["route"] = route  # the request metrics label it with its template, as the router would
        body = error_body(scope["path"], error.status, error.type, error.message)
        await ORJSONResponse(body, error.status, error.headers)(scope, receive, send)
