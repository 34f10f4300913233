"""The OpenAPI schema tells the truth: live answers of every route, errors included, are checked against
it (status documented, content type documented, body and required headers valid), on a server with
API keys, an admin token and a metrics token, and on one whose start-up failed (503s). Every
operation in the schema must be exercised here, so a new route cannot skip the check."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis.openapi

from tests.service.conftest import (
    ADMIN_TOKEN,
    ServerThread,
    image_bytes,
    make_learner,
    multipart,
    running,
    server_settings,
    write_checkpoint,
)

KEY, METRICS = "openapi-test-key", "openapi-metrics-token"
AUTH = {"Authorization": f"Bearer {KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
IMAGE = multipart([image_bytes(1)], ["cat", "dog"])
B64 = base64.b64encode(image_bytes(1)).decode()
HF = {"inputs": B64, "parameters": {"candidate_labels": ["cat", "dog"]}}
V2_IMAGES = {"name": "images", "shape": [1], "datatype": "BYTES", "data": [B64]}
V2_LABELS = {"name": "labels", "shape": [2], "datatype": "BYTES", "data": ["cat", "dog"]}
V2 = {"inputs": [V2_IMAGES, V2_LABELS]}
V2_BINARY = {**V2, "parameters": {"binary_data_output": True}}
JSON_AUTH = {**AUTH, "content-type": "application/json"}

# (operation as the schema names it, path, request kwargs, expected status), in order: admin calls
# build on each other.
CASES: list[tuple[str, str, dict[str, Any], int]] = [
    ("GET /", "/", {}, 307),
    ("GET /health/live", "/health/live", {}, 200),
    ("GET /health/ready", "/health/ready", {}, 200),
    ("GET /metrics", "/metrics", {}, 401),
    ("GET /metrics", "/metrics", {"headers": {"Authorization": f"Bearer {METRICS}"}}, 200),
    ("GET /v1/models", "/v1/models", {}, 401),
    ("GET /v1/models", "/v1/models", {"headers": AUTH}, 200),
    ("GET /v1/models", "/v1/models", {"headers": ADMIN}, 200),
    ("POST /classify", "/classify", {"headers": AUTH, **IMAGE}, 200),
    ("POST /classify", "/classify", IMAGE, 401),
    (
        "POST /classify",
        "/classify",
        {"headers": {**AUTH, "content-type": "application/json"}, "content": b"{"},
        400,
    ),
    ("POST /classify", "/classify", {"headers": AUTH, **multipart([b"not an image"], ["a"])}, 415),
    ("POST /classify", "/classify", {"headers": AUTH, "json": {"images": ["http://127.0.0.1/x.png"]}}, 403),
    (
        "POST /classify",
        "/classify",
        {"headers": AUTH, **multipart([image_bytes(1)], ["a"], model="nope")},
        404,
    ),
    ("POST /classify", "/classify", {"headers": AUTH, **multipart([image_bytes(1)] * 3, ["a"])}, 413),
    (
        "POST /classify",
        "/classify",
        {"headers": {**AUTH, "content-type": "text/plain"}, "content": b"x"},
        415,
    ),
    ("POST /classify", "/classify", {"headers": AUTH, "params": {"top_k": "0"}, **IMAGE}, 422),
    # the protocol routes (docs/PROTOCOLS.md); under /v2 errors have the protocol's body
    ("POST /", "/", {"headers": AUTH, "json": HF}, 200),
    ("POST /", "/", {"json": HF}, 401),
    ("POST /", "/", {"headers": JSON_AUTH, "content": b"{"}, 400),
    ("POST /", "/", {"headers": AUTH, "json": {**HF, "inputs": "http://127.0.0.1/x.png"}}, 403),
    ("POST /", "/", {"headers": {**AUTH, "content-type": "text/plain"}, "content": b"x"}, 415),
    ("POST /", "/", {"headers": AUTH, "json": {"inputs": B64}}, 422),
    (
        "POST /models/{name}",
        "/models/pets",
        {"headers": {**AUTH, "content-type": "image/png"}, "content": image_bytes(2)},
        200,
    ),
    ("POST /models/{name}", "/models/nope", {"headers": AUTH, "json": HF}, 404),
    (
        "POST /v1/embeddings",
        "/v1/embeddings",
        {"headers": AUTH, "json": {"model": "pets", "input": ["cat"]}},
        200,
    ),
    (
        "POST /v1/embeddings",
        "/v1/embeddings",
        {"headers": AUTH, "json": {"model": "pets", "input": [B64] * 3, "modality": "image"}},
        413,
    ),
    ("POST /v1/embeddings", "/v1/embeddings", {"headers": AUTH, "json": {"model": "pets", "input": []}}, 422),
    ("POST /v1/embeddings", "/v1/embeddings", {"headers": AUTH, "json": {"model": "x", "input": "a"}}, 404),
    ("GET /v1/models/{model_id}", "/v1/models/pets", {"headers": AUTH}, 200),
    ("GET /v1/models/{model_id}", "/v1/models/nope", {"headers": AUTH}, 404),
    ("GET /v1/models/{model_id}", "/v1/models/pets", {}, 401),
    ("GET /v2", "/v2", {"headers": AUTH}, 200),
    ("GET /v2", "/v2", {}, 401),
    ("GET /v2/health/live", "/v2/health/live", {}, 200),
    ("GET /v2/health/ready", "/v2/health/ready", {}, 200),
    ("GET /v2/models/{name}", "/v2/models/pets", {"headers": AUTH}, 200),
    ("GET /v2/models/{name}", "/v2/models/nope", {"headers": AUTH}, 404),
    ("GET /v2/models/{name}/versions/{version}", "/v2/models/pets/versions/1", {"headers": AUTH}, 200),
    ("GET /v2/models/{name}/versions/{version}", "/v2/models/pets/versions/9", {"headers": AUTH}, 404),
    ("GET /v2/models/{name}/ready", "/v2/models/pets/ready", {"headers": AUTH}, 200),
    ("GET /v2/models/{name}/ready", "/v2/models/nope/ready", {"headers": AUTH}, 404),
    (
        "GET /v2/models/{name}/versions/{version}/ready",
        "/v2/models/pets/versions/1/ready",
        {"headers": AUTH},
        200,
    ),
    ("POST /v2/models/{name}/infer", "/v2/models/zeroshot/infer", {"headers": AUTH, "json": V2}, 200),
    ("POST /v2/models/{name}/infer", "/v2/models/zeroshot/infer", {"headers": AUTH, "json": V2_BINARY}, 200),
    ("POST /v2/models/{name}/infer", "/v2/models/zeroshot/infer", {"json": V2}, 401),
    ("POST /v2/models/{name}/infer", "/v2/models/zeroshot/infer", {"headers": AUTH, "content": b"{"}, 400),
    ("POST /v2/models/{name}/infer", "/v2/models/nope/infer", {"headers": AUTH, "json": V2}, 404),
    (
        "POST /v2/models/{name}/infer",
        "/v2/models/zeroshot/infer",
        {"headers": AUTH, "json": {"inputs": [V2_LABELS]}},
        422,
    ),
    (
        "POST /v2/models/{name}/versions/{version}/infer",
        "/v2/models/pets/versions/1/infer",
        {"headers": AUTH, "json": {"inputs": [V2_IMAGES]}},
        200,
    ),
    ("POST /admin/models", "/admin/models", {"json": {"name": "b", "file": "versions/b.safetensors"}}, 401),
    (
        "POST /admin/models",
        "/admin/models",
        {"headers": ADMIN, "json": {"name": "b", "file": "versions/b.safetensors"}},
        201,
    ),
    (
        "POST /admin/models",
        "/admin/models",
        {"headers": ADMIN, "json": {"name": "b", "file": "versions/b.safetensors"}},
        409,
    ),
    (
        "POST /admin/models",
        "/admin/models",
        {"headers": ADMIN, "json": {"name": "c", "file": "versions/none.safetensors"}},
        404,
    ),
    ("POST /admin/models", "/admin/models", {"headers": ADMIN, "json": {"name": "c"}}, 422),
    (
        "POST /admin/models/{name}/swap",
        "/admin/models/b/swap",
        {"headers": ADMIN, "json": {"file": "versions/b.safetensors"}},
        200,
    ),
    (
        "POST /admin/models/{name}/swap",
        "/admin/models/zz/swap",
        {"headers": ADMIN, "json": {"file": "versions/b.safetensors"}},
        404,
    ),
    ("PUT /admin/aliases/{alias}", "/admin/aliases/prod", {"headers": ADMIN, "json": {"model": "b"}}, 200),
    ("PUT /admin/aliases/{alias}", "/admin/aliases/b", {"headers": ADMIN, "json": {"model": "b"}}, 409),
    ("PUT /admin/aliases/{alias}", "/admin/aliases/x", {"headers": ADMIN, "json": {"model": "zz"}}, 404),
    ("PUT /admin/default", "/admin/default", {"headers": ADMIN, "json": {"model": "prod"}}, 200),
    ("PUT /admin/default", "/admin/default", {"headers": ADMIN, "json": {"model": "zz"}}, 404),
    ("PUT /admin/default", "/admin/default", {"headers": ADMIN, "json": {}}, 422),
    ("DELETE /admin/aliases/{alias}", "/admin/aliases/prod", {"headers": ADMIN}, 409),
    ("DELETE /admin/models/{name}", "/admin/models/b", {"headers": ADMIN}, 409),
    ("PUT /admin/default", "/admin/default", {"headers": ADMIN, "json": {"model": "zeroshot"}}, 200),
    ("DELETE /admin/aliases/{alias}", "/admin/aliases/prod", {"headers": ADMIN}, 200),
    ("DELETE /admin/aliases/{alias}", "/admin/aliases/prod", {"headers": ADMIN}, 404),
    ("DELETE /admin/models/{name}", "/admin/models/b", {"headers": ADMIN}, 200),
    ("DELETE /admin/models/{name}", "/admin/models/b", {"headers": ADMIN}, 404),
]
# A server whose start-up failed: every route that needs the models answers 503; no admin token: 403.
NOT_READY: list[tuple[str, str, dict[str, Any], int]] = [
    ("GET /health/ready", "/health/ready", {}, 503),
    ("GET /v1/models", "/v1/models", {}, 503),
    ("POST /classify", "/classify", IMAGE, 503),
    ("POST /", "/", {"json": HF}, 503),
    ("POST /v1/embeddings", "/v1/embeddings", {"json": {"model": "pets", "input": "cat"}}, 503),
    ("GET /v2/health/ready", "/v2/health/ready", {}, 400),
    ("GET /v2/models/{name}/ready", "/v2/models/pets/ready", {}, 400),
    ("POST /v2/models/{name}/infer", "/v2/models/pets/infer", {"json": V2}, 503),
    ("PUT /admin/default", "/admin/default", {"headers": ADMIN, "json": {"model": "x"}}, 403),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: object) -> Iterator[ServerThread]:
    folder = tmp_path_factory.mktemp("openapi")
    write_checkpoint(folder / "pets.safetensors", make_learner(tiny_backbone, seed=1))  # type: ignore[arg-type]
    (folder / "versions").mkdir()
    shutil.copy(folder / "pets.safetensors", folder / "versions" / "b.safetensors")
    settings = server_settings(folder, api_keys=KEY, metrics_token=METRICS, max_images=2)
    with running(settings) as server:
        yield server


def conforms(schema: dict[str, Any], operation: str, response: httpx.Response) -> None:
    method, path = operation.split(" ", 1)
    documented = schema["paths"][path][method.lower()]["responses"]
    status = str(response.status_code)
    assert status in documented, f"{operation}: {status} is not documented ({sorted(documented)})"
    content = documented[status].get("content", {})
    media = response.headers.get("content-type", "").split(";")[0]
    assert not content or media in content, f"{operation} {status}: {media} not in {list(content)}"
    for name, header in documented[status].get("headers", {}).items():
        assert not header.get("required") or name.lower() in response.headers, f"{operation}: {name}"
    loaded = schemathesis.openapi.from_dict(schema)
    response.read()
    response.request.read()  # multipart requests stream; the validator looks at the request too
    loaded[path][method].validate_response(response)  # body against the documented schema


def run_cases(server: ServerThread, cases: list[tuple[str, str, dict[str, Any], int]]) -> set[str]:
    schema = httpx.get(server.url + "/openapi.json").json()
    for operation, path, kwargs, expected in cases:
        method = operation.split(" ", 1)[0]
        response = httpx.request(method, server.url + path, follow_redirects=False, timeout=30, **kwargs)
        assert response.status_code == expected, (operation, path, response.text)
        conforms(schema, operation, response)
    return {f"{m.upper()} {p}" for p, ops in schema["paths"].items() for m in ops}


def test_every_route_answers_as_documented(server: ServerThread) -> None:
    operations = run_cases(server, CASES)
    assert operations == {operation for operation, *_ in CASES}, "an operation without a live check"


def test_errors_of_a_server_that_is_not_ready_are_documented(tmp_path: Path) -> None:
    settings = server_settings(pretrained=str(tmp_path / "missing.safetensors"), admin_token=None)
    with running(settings, wait_ready=False) as server:
        run_cases(server, NOT_READY)


def test_security_schemes_follow_the_settings(server: ServerThread) -> None:
    schema = httpx.get(server.url + "/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["apiKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "an API key",
    }
    paths = schema["paths"]
    assert {"apiKeyBearer": []} in paths["/classify"]["post"]["security"]
    assert paths["/admin/default"]["put"]["security"] == [{"adminToken": []}]
    assert paths["/metrics"]["get"]["security"] == [{"metricsToken": []}, {"adminToken": []}]
    assert "security" not in paths["/health/ready"]["get"]
    assert "HTTPValidationError" not in str(schema)
    with running(server_settings(warmup=False)) as open_server:  # no keys: no requirement to claim
        plain = httpx.get(open_server.url + "/openapi.json").json()["paths"]
        assert (
            "security" not in plain["/classify"]["post"]
            and "401" not in plain["/classify"]["post"]["responses"]
        )


def test_every_reference_resolves_inside_the_document(server: ServerThread) -> None:
    """Request bodies given as `openapi_extra` must not carry pydantic's `#/$defs/...` references:
    they point at the document's root, where nothing is (ReDoc stops rendering)."""
    schema = httpx.get(server.url + "/openapi.json").json()

    def references(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from references(value)
        elif isinstance(node, list):
            for item in node:
                yield from references(item)

    found = set(references(schema))
    assert found, "no references at all: the check would be empty"
    for reference in found:
        node: Any = schema
        for part in reference.removeprefix("#/").split("/"):
            assert isinstance(node, dict) and part in node, f"{reference} does not resolve"
            node = node[part]
