"""POST /classify: parse (multipart, JSON or a raw image), then the data path in service.api.classify."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.requests import Request

from service.api.classify import classify
from service.api.json_response import ORJSONResponse
from service.api.model_requests import UNKNOWN, count_model_request, model_label
from service.api.openapi import error_responses
from service.api.parse import ClassifyInput, ClassifyJSON, parse_classify
from service.api.routes.deps import RuntimeDep
from service.errors import DeadlineExceeded, ServiceError

router = APIRouter()


class Prediction(BaseModel):
    label: str
    score: float
    cosine: float


class Result(BaseModel):
    predictions: list[Prediction]


class ModelRef(BaseModel):
    name: str
    version: str
    method: str
    sha256: str


class ClassifyResponse(BaseModel):
    model: ModelRef
    results: list[Result]


_STRINGS = {"type": "array", "items": {"type": "string"}}
QUERY = {
    "labels": _STRINGS,
    "templates": _STRINGS,
    "model": {"type": "string"},
    "top_k": {"type": "integer", "minimum": 1},
}
REQUEST_BODY: dict[str, Any] = {
    "parameters": [
        {"name": name, "in": "query", "required": False, "schema": schema, "style": "form", "explode": True}
        for name, schema in QUERY.items()
    ],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["images"],
                    "properties": {
                        "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "labels": _STRINGS,
                        "templates": _STRINGS,
                        "model": {"type": "string"},
                        "top_k": {"type": "integer", "minimum": 1},
                    },
                }
            },
            "application/json": {"schema": ClassifyJSON.model_json_schema()},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    },
}


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    openapi_extra=REQUEST_BODY,
    summary="Classify images against labels (or a checkpoint's own classes)",
    description="labels, templates, model and top_k may also be given as query parameters (a raw "
    "image/* body has no other place for them); a field given both in the body and in the query "
    "string is refused (422). JSON images may be http(s) URLs when the server allows them "
    "(image_url_allow).",
    responses=error_responses(400, 403, 404, 413, 415, 422, 429, 503, 504),
)
async def classify_route(request: Request, runtime: RuntimeDep) -> ORJSONResponse:
    # admitted by service.api.admission (max_inflight_requests); the deadline covers reading the body too
    timeout = runtime.settings.request_timeout_s
    parsed: ClassifyInput | None = None
    try:
        async with asyncio.timeout(timeout):
            parsed = await parse_classify(request, runtime.settings)
            answer = await classify(runtime, parsed)
    except TimeoutError as error:
        count_model_request(runtime, model_label(runtime, parsed.model) if parsed else UNKNOWN, 504)
        raise DeadlineExceeded(f"no answer within request_timeout_s={timeout}") from error
    except ServiceError as error:
        count_model_request(runtime, model_label(runtime, parsed.model) if parsed else UNKNOWN, error.status)
        raise
    count_model_request(runtime, model_label(runtime, answer["model"]["name"]), 200)
    return ORJSONResponse(answer)
