"""The concurrency limit: past max_inflight_requests a /classify request is refused at once with
429 + Retry-After (before its body is read), the admitted requests finish, and once they have, the
next request is served."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from models.backbone import Backbone
from models.prompts import METHODS
from tests.reliability.conftest import assert_clean_error
from tests.service.conftest import (
    image_bytes,
    make_learner,
    multipart,
    running,
    server_settings,
    write_checkpoint,
)
from tests.service.learners import SlowImage


def test_requests_past_max_inflight_get_429_at_once_and_admitted_ones_finish(
    tmp_path: Path, tiny_backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(METHODS, SlowImage.method, SlowImage)
    write_checkpoint(tmp_path / "slow.safetensors", make_learner(tiny_backbone, seed=1, method=SlowImage))
    settings = server_settings(tmp_path, max_inflight_requests=2, max_batch_size=1, request_timeout_s=30)
    blob = image_bytes(3)

    async def scenario(url: str) -> tuple[list[httpx.Response], httpx.Response, float, httpx.Response, str]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            slow = [
                asyncio.create_task(client.post("/classify", **multipart([blob], model="slow")))
                for _ in range(2)
            ]
            for _ in range(200):  # bounded: 4 s
                if "clipserve_inflight_requests 2.0" in (await client.get("/metrics")).text:
                    break
                await asyncio.sleep(0.02)
            started = time.monotonic()
            refused = await client.post("/classify", **multipart([blob], ["cat", "dog"]))
            refused_after = time.monotonic() - started
            admitted = list(await asyncio.gather(*slow))
            after = await client.post("/classify", **multipart([blob], ["cat", "dog"]))
            return admitted, refused, refused_after, after, (await client.get("/metrics")).text

    with running(settings) as server:
        admitted, refused, refused_after, after, metrics = asyncio.run(scenario(server.url))

    assert [r.status_code for r in admitted] == [200, 200]
    assert refused.status_code == 429 and "max_inflight_requests=2" in assert_clean_error(refused)
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused_after < 0.5
    assert after.status_code == 200
    # refused before routing, yet counted under its route and with its own reason
    assert 'clipserve_requests_total{code="429",route="/classify"} 1.0' in metrics
    assert 'clipserve_rejected_requests_total{reason="inflight_limit"} 1.0' in metrics
    assert 'clipserve_rejected_requests_total{reason="queue_full"} 0.0' in metrics
    assert "app;dur=" in refused.headers["Server-Timing"] and "app;dur=" in after.headers["Server-Timing"]
