"""POST /classify: parse (multipart, JSON or a raw image), then the data path in service.api.classify."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse

from service.api.classify import classify
from service.api.deadline import deadline
from service.api.parse import ClassifyJSON, parse_classify
from service.api.routes.deps import RuntimeDep

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
REQUEST_BODY: dict[str, Any] = {
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
    }
}


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    openapi_extra=REQUEST_BODY,
    summary="Classify images against labels (or a checkpoint's own classes)",
    description="A raw image/* body takes labels, templates, model and top_k as query parameters.",
)
async def classify_route(request: Request, runtime: RuntimeDep) -> JSONResponse:
    # admitted by service.api.admission (max_inflight_requests); the deadline covers reading the body too
    async with deadline(runtime.settings):
        parsed = await parse_classify(request, runtime.settings)
        return JSONResponse(await classify(runtime, parsed))
