"""The OpenAPI schema, kept true: every route declares the error statuses it can answer (all with the
one error body), and the security schemes match the settings the app runs with (API keys, admin
token, metrics token). tests/service/api/test_openapi.py checks live answers against it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from service.api.auth import METRICS_PATH, PUBLIC_PATHS, PUBLIC_PREFIXES
from service.api.error_shape import speaks_open_inference
from service.settings import Settings


class ErrorDetail(BaseModel):
    code: int
    type: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer: {"error": {"code", "type", "message"}}; the message names the limit or rule."""

    error: ErrorDetail


class OpenInferenceErrorBody(BaseModel):
    """Every error answer under /v2, in the Open Inference Protocol's shape: {"error": "<message>"}."""

    error: str


DESCRIPTIONS = {
    400: "Malformed request: a corrupt image, body or query string",
    401: "Missing or wrong credentials (API key, admin token or metrics token)",
    403: "Refused by policy: admin routes disabled, or an image URL that image_url_allow refuses",
    404: "Unknown model, alias or checkpoint file",
    409: "Conflict: an incompatible checkpoint, or an admin action that conflicts with the current state",
    413: "Too large: body size, images per request, pixels per image or a fetched image's bytes",
    415: "Unsupported content type or image format",
    422: "Invalid input: labels, templates, top_k, fields, or an image URL that could not be fetched",
    429: "Overloaded: queue full or too many requests in flight; retry after Retry-After seconds",
    503: "Not ready: models still loading, start-up failed, or draining",
    504: "No answer within request_timeout_s",
}
# What an inference route can answer besides 200 (/classify and the protocol routes).
INFERENCE_ERRORS = (400, 403, 404, 413, 415, 422, 429, 503, 504)
HEADERS = {
    401: {"WWW-Authenticate": "the authentication scheme to use (Bearer)"},
    429: {"Retry-After": "seconds to wait before retrying"},
    503: {"Retry-After": "seconds to wait before retrying"},
}
API_KEY_SCHEMES = ("apiKeyBearer", "apiKeyHeader")


def error_responses(*codes: int, body: type[BaseModel] = ErrorBody) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses=` for these statuses, each with the error body (and its headers)."""
    return {code: _error_response(code, body) for code in codes}


def _error_response(code: int, body: type[BaseModel] = ErrorBody) -> dict[str, Any]:
    response: dict[str, Any] = {"model": body, "description": DESCRIPTIONS[code]}
    if code in HEADERS:
        response["headers"] = {
            name: {"description": text, "required": True, "schema": {"type": "string"}}
            for name, text in HEADERS[code].items()
        }
    return response


def install_openapi(app: FastAPI, settings: Settings) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            app.openapi_schema = with_security(with_error_bodies(schema), settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_error_bodies(schema: dict[str, Any]) -> dict[str, Any]:
    """FastAPI documents its own 422 body (HTTPValidationError) on operations with parameters; the
    service answers every error with ErrorBody, and an operation whose only parameters are path
    strings cannot fail validation at all."""
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            response = operation["responses"].get("422")
            if response is None or "HTTPValidationError" not in str(response):
                continue
            parameters = [p for p in operation.get("parameters", []) if p.get("in") != "path"]
            if "requestBody" in operation or parameters:
                operation["responses"]["422"] = _documented(422, path)
            else:
                del operation["responses"]["422"]
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema


def with_security(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Security schemes and per-operation requirements (and their 401) as this server enforces them."""
    schemes: dict[str, Any] = {
        "adminToken": {"type": "http", "scheme": "bearer", "description": "CLIPSERVE_ADMIN_TOKEN"},
        "apiKeyBearer": {"type": "http", "scheme": "bearer", "description": "an API key as a bearer token"},
        "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "an API key"},
        "metricsToken": {"type": "http", "scheme": "bearer", "description": "CLIPSERVE_METRICS_TOKEN"},
    }
    schema.setdefault("components", {})["securitySchemes"] = schemes
    keys = settings.api_keys is not None or settings.api_keys_file is not None
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            requirement = _requirement(path, method, keys, settings)
            if requirement:
                operation["security"] = requirement
                operation["responses"].setdefault("401", _documented(401, path))
    return schema


def _requirement(path: str, method: str, keys: bool, settings: Settings) -> list[dict[str, list[str]]]:
    if path.startswith("/admin/"):
        return [{"adminToken": []}]
    if path == METRICS_PATH:
        return [{"metricsToken": []}, {"adminToken": []}] if settings.metrics_token is not None else []
    public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES) or (path == "/" and method == "get")
    if public or not keys:
        return []
    empty: list[str] = []
    return [{name: empty} for name in (*API_KEY_SCHEMES, "adminToken")]


def _documented(code: int, path: str) -> dict[str, Any]:
    """An error response in schema form (what FastAPI writes for `error_responses` entries), in the
    body the path answers with (service.api.error_shape)."""
    response = {k: v for k, v in _error_response(code).items() if k != "model"}
    body = OpenInferenceErrorBody if speaks_open_inference(path) else ErrorBody
    ref = {"$ref": f"#/components/schemas/{body.__name__}"}
    return {**response, "content": {"application/json": {"schema": ref}}}


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A request model's JSON schema with its nested models written in place, for `openapi_extra`:
    pydantic's `#/$defs/...` references would point at the root of the OpenAPI document, where
    nothing is (ReDoc stops rendering; validators guess)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref", "")
            if reference.startswith("#/$defs/"):
                return resolve(definitions[reference.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
