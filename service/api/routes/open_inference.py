"""The Open Inference Protocol v2 (KServe, Triton) under /v2: health, server and model metadata,
model readiness and inference. Errors here have the protocol's shape, {"error": "<message>"}
(service.api.error_shape); health answers are 200 (true) or 4xx (false) with an empty body when
true, as the protocol says. Tensors in service.api.protocols.open_inference(_answer)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from service.api.classify import Scored, score
from service.api.deadline import deadline
from service.api.json_response import ORJSONResponse
from service.api.model_requests import counted
from service.api.openapi import INFERENCE_ERRORS, OpenInferenceErrorBody, error_responses, inline_schema
from service.api.parse import ClassifyInput, read_body
from service.api.protocols.open_inference import InferRequest, parse_infer
from service.api.protocols.open_inference_answer import EXTENSIONS, infer_answer, model_metadata
from service.api.routes.deps import RuntimeDep, StateDep
from service.catalog.versions import Version
from service.errors import NotFound
from service.runtime import Runtime

router = APIRouter(tags=["Open Inference Protocol v2"])
LOOKUP_ERRORS = error_responses(404, 503, body=OpenInferenceErrorBody)
INFER_ERRORS = error_responses(*INFERENCE_ERRORS, body=OpenInferenceErrorBody)
NOT_READY_ANSWER: dict[int | str, dict[str, Any]] = {
    400: {"model": OpenInferenceErrorBody, "description": "not ready (the protocol's false)"}
}
NOT_READY = 400  # the protocol: "a 4xx status code indicates false"
EMPTY_TRUE: dict[int | str, dict[str, Any]] = {200: {"description": "true (an empty body)"}}
BINARY_OR_JSON: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the inference response: JSON, or with binary outputs the JSON header (its size "
        "in Inference-Header-Content-Length) followed by the tensors' bytes",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def server_version() -> str:
    try:
        return version("clipserve")
    except PackageNotFoundError:
        return "unknown"


@router.get("/v2", summary="Server metadata")
async def server_metadata() -> dict[str, Any]:
    return {"name": "clipserve", "version": server_version(), "extensions": list(EXTENSIONS)}


@router.get(
    "/v2/health/live", summary="Server live (200, empty body)", response_class=Response, responses=EMPTY_TRUE
)
async def server_live() -> Response:
    return Response(status_code=200)


@router.get(
    "/v2/health/ready",
    summary="Server ready (200), or 400 while loading or draining",
    response_class=Response,
    responses={**EMPTY_TRUE, **NOT_READY_ANSWER},
)
async def server_ready(state: StateDep) -> Response:
    if state.ready:
        return Response(status_code=200)
    reason = "draining" if state.draining else (state.error or "loading")
    return ORJSONResponse({"error": f"not ready: {reason}"}, status_code=NOT_READY)


def active_version(runtime: Runtime, name: str, number: str | None) -> Version:
    """The active version of model (or alias) `name`; 404 when a given version is not the active one."""
    active = runtime.registry.resolve(name)
    if number is not None and number != str(active.number):
        raise NotFound(f"model {active.model!r} serves version {active.number}, not {number!r}")
    return active


@router.get("/v2/models/{name}", summary="Model metadata", responses=LOOKUP_ERRORS)
async def metadata(name: str, runtime: RuntimeDep) -> dict[str, Any]:
    return model_metadata(active_version(runtime, name, None).ref())


@router.get(
    "/v2/models/{name}/versions/{version}", summary="Model metadata of a version", responses=LOOKUP_ERRORS
)
async def version_metadata(name: str, version: str, runtime: RuntimeDep) -> dict[str, Any]:
    return model_metadata(active_version(runtime, name, version).ref())


@router.get(
    "/v2/models/{name}/ready",
    summary="Model ready (200), 400 not ready, 404 unknown",
    response_class=Response,
    responses={**EMPTY_TRUE, **NOT_READY_ANSWER, **error_responses(404, body=OpenInferenceErrorBody)},
)
async def model_ready(name: str, state: StateDep) -> Response:
    return ready_answer(state.runtime if state.ready else None, name, None)


@router.get(
    "/v2/models/{name}/versions/{version}/ready",
    summary="Model version ready",
    response_class=Response,
    responses={**EMPTY_TRUE, **NOT_READY_ANSWER, **error_responses(404, body=OpenInferenceErrorBody)},
)
async def version_ready(name: str, version: str, state: StateDep) -> Response:
    return ready_answer(state.runtime if state.ready else None, name, version)


def ready_answer(runtime: Runtime | None, name: str, number: str | None) -> Response:
    if runtime is None:
        return ORJSONResponse({"error": "not ready: models are loading or the server is draining"}, NOT_READY)
    active_version(runtime, name, number)  # 404 if unknown
    return Response(status_code=200)


INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": inline_schema(InferRequest)},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "binary tensor data extension: the JSON header, then the tensors' "
                "bytes; header size in Inference-Header-Content-Length",
            },
        },
    }
}


@router.post(
    "/v2/models/{name}/infer",
    summary="Inference",
    openapi_extra=INFER_BODY,
    responses={**BINARY_OR_JSON, **INFER_ERRORS},
)
async def infer(name: str, request: Request, runtime: RuntimeDep) -> Response:
    return await run_infer(request, runtime, name, None)


@router.post(
    "/v2/models/{name}/versions/{version}/infer",
    summary="Inference on a version",
    openapi_extra=INFER_BODY,
    responses={**BINARY_OR_JSON, **INFER_ERRORS},
)
async def infer_version(name: str, version: str, request: Request, runtime: RuntimeDep) -> Response:
    return await run_infer(request, runtime, name, version)


async def run_infer(request: Request, runtime: Runtime, name: str, number: str | None) -> Response:
    # admitted by service.api.admission like /classify; the deadline covers reading the body too
    async with counted(runtime) as tally, deadline(runtime.settings):
        tally.name(name)
        active_version(runtime, name, number)  # unknown model or version: 404 before reading the body
        body = await read_body(request, runtime.settings.max_body_bytes)
        header_length = request.headers.get("inference-header-content-length")
        parsed = await parse_infer(body, header_length, runtime.settings)
        classify_input = ClassifyInput(parsed.images, parsed.labels, name, 1, parsed.templates)

        def answer(scored: Scored) -> Response:
            if number is not None and scored.model["version"] != number:  # swapped while reading
                raise NotFound(f"model {scored.model['name']!r} now serves version {scored.model['version']}")
            return infer_answer(scored, parsed.outputs, parsed.request_id)

        return await score(runtime, classify_input, answer)
