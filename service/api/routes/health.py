"""Liveness, readiness and /metrics. Readiness is 503 while loading and while draining."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from service.api.json_response import ORJSONResponse
from service.api.openapi import error_responses
from service.api.routes.deps import StateDep

router = APIRouter()


@router.get("/health/live", summary="The process is up (cheap; no model work)")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get(
    "/health/ready", summary="Models loaded and warmed, and not draining", responses=error_responses(503)
)
async def ready(state: StateDep) -> ORJSONResponse:
    if state.ready:
        assert state.runtime is not None
        return ORJSONResponse({"status": "ready", "models": sorted(state.runtime.registry.active)})
    reason = "draining" if state.draining else (state.error or "loading")
    body = {"error": {"code": 503, "type": "not_ready", "message": reason}}
    return ORJSONResponse(body, status_code=503, headers={"Retry-After": "1"})


METRICS_BODY: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}
}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response, responses=METRICS_BODY)
async def metrics(request: Request, state: StateDep) -> Response:
    request.app.state.process_stats.update()  # this worker's values, fresh for this scrape
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
