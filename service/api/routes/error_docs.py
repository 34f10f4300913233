"""Error answers as the OpenAPI schema declares them, per protocol (service.api.error_shape)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    code: int
    type: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class OpenInferenceErrorBody(BaseModel):
    """The Open Inference Protocol's error object."""

    error: str


MEANINGS = {
    400: "malformed request (body, base64, binary tensor data) or corrupt image",
    404: "unknown model, or a version that is not the active one",
    413: "body, images per request or pixels per image over their limit",
    415: "unsupported content type or image format",
    422: "well-formed but unacceptable input (labels, templates, fields); the message names the limit",
    429: "queue full or max_inflight_requests reached; see Retry-After",
    503: "models are still loading, or the server is draining",
    504: "no answer within request_timeout_s",
}
INFERENCE = (400, 404, 413, 415, 422, 429, 503, 504)
LOOKUP = (404, 503)


def error_responses(
    codes: tuple[int, ...], body: type[BaseModel] = ErrorBody
) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": body, "description": MEANINGS[code]} for code in codes}
