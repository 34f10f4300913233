"""Liveness, readiness and /metrics. Readiness is 503 while loading and while draining."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import JSONResponse, Response

from service.api.routes.deps import StateDep

router = APIRouter()


@router.get("/health/live", summary="The process is up (cheap; no model work)")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/health/ready", summary="Models loaded and warmed, and not draining")
async def ready(state: StateDep) -> JSONResponse:
    if state.ready:
        assert state.runtime is not None
        return JSONResponse({"status": "ready", "models": sorted(state.runtime.registry.active)})
    reason = "draining" if state.draining else (state.error or "loading")
    body = {"error": {"code": 503, "type": "not_ready", "message": reason}}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
