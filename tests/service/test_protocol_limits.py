"""The protocol routes live under /classify's rules: one in-flight limit (429 before the body is
read, labelled with the route template), the request deadline (504), and their metrics."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import httpx

from models.backbone import Backbone
from tests.service.conftest import (
    image_bytes,
    make_learner,
    multipart,
    running,
    server_settings,
    write_checkpoint,
)
from tests.service.learners import SlowImage

BLOB = image_bytes(41)
B64 = base64.b64encode(BLOB).decode()


def protocol_requests(model: str) -> dict[str, dict[str, Any]]:
    """route template -> httpx kwargs of one valid request for `model`."""
    v2_inputs = [
        {"name": "images", "shape": [1], "datatype": "BYTES", "data": [B64]},
        {"name": "labels", "shape": [2], "datatype": "BYTES", "data": ["cat", "dog"]},
    ]
    return {
        "/models/{name}": {
            "url": f"/models/{model}",
            "json": {"inputs": B64, "parameters": {"candidate_labels": ["cat", "dog"]}},
        },
        "/v1/embeddings": {
            "url": "/v1/embeddings",
            "json": {"model": model, "input": [B64], "modality": "image"},
        },
        "/v2/models/{name}/infer": {"url": f"/v2/models/{model}/infer", "json": {"inputs": v2_inputs}},
    }


def message_of(response: httpx.Response) -> str:
    error = response.json()["error"]
    return error if isinstance(error, str) else error["message"]  # /v2: the protocol's shape


def test_every_inference_route_shares_the_inflight_limit(
    tmp_path: Path, tiny_backbone: Backbone, methods: Any
) -> None:
    methods(SlowImage)
    write_checkpoint(tmp_path / "slow.safetensors", make_learner(tiny_backbone, seed=1, method=SlowImage))
    settings = server_settings(tmp_path, max_inflight_requests=2, max_batch_size=1, request_timeout_s=30)

    async def scenario(url: str) -> tuple[dict[str, httpx.Response], list[httpx.Response], str]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            slow = [
                asyncio.create_task(client.post("/classify", **multipart([BLOB], model="slow")))
                for _ in range(2)
            ]
            for _ in range(1000):  # bounded: 20 s on a loaded machine
                if "clipserve_inflight_requests 2.0" in (await client.get("/metrics")).text:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the two slow requests were never in flight together")
            refused = {}
            for route, kwargs in protocol_requests("zeroshot").items():
                kwargs = dict(kwargs)
                refused[route] = await client.post(kwargs.pop("url"), **kwargs)
            refused["/"] = await client.post("/", json={"inputs": B64})
            reads = [await client.get("/v2/models/zeroshot"), await client.get("/v1/models")]
            await asyncio.gather(*slow)
            return refused, reads, (await client.get("/metrics")).text

    with running(settings) as server:
        refused, reads, metrics = asyncio.run(scenario(server.url))

    for route, response in refused.items():
        assert response.status_code == 429, (route, response.text)
        assert "max_inflight_requests=2" in message_of(response) and int(response.headers["Retry-After"]) >= 1
        assert f'clipserve_requests_total{{code="429",route="{route}"}} 1.0' in metrics, route
    assert refused["/v2/models/{name}/infer"].json().keys() == {"error"}
    assert [r.status_code for r in reads] == [200, 200], "reads are not admitted, so never refused"
    assert 'clipserve_rejected_requests_total{reason="inflight_limit"} 4.0' in metrics


def test_every_inference_route_answers_504_at_its_deadline(
    tmp_path: Path, tiny_backbone: Backbone, methods: Any
) -> None:
    methods(SlowImage)
    write_checkpoint(tmp_path / "slow.safetensors", make_learner(tiny_backbone, seed=1, method=SlowImage))
    settings = server_settings(tmp_path, request_timeout_s=0.5)

    async def scenario(url: str) -> dict[str, httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            requests = {}
            for route, kwargs in protocol_requests("slow").items():
                kwargs = dict(kwargs)
                requests[route] = client.post(kwargs.pop("url"), **kwargs)
            answers = await asyncio.gather(*requests.values())
            return dict(zip(requests, answers, strict=True))

    with running(settings) as server:
        answers = asyncio.run(scenario(server.url))
        metrics = httpx.get(server.url + "/metrics").text
    for route, response in answers.items():
        assert response.status_code == 504, (route, response.text)
        assert "request_timeout_s=0.5" in message_of(response)
    assert 'clipserve_rejected_requests_total{reason="timeout"} 3.0' in metrics
    assert 'clipserve_requests_total{code="504",route="/v1/embeddings"} 1.0' in metrics
    assert 'clipserve_model_requests_total{code="504",model="slow"} 3.0' in metrics  # per model, too
