"""Backpressure and limits, end to end: 429 + Retry-After on a full queue, 504 past the deadline,
413/422 naming the limit, 415/400 for unsupported or corrupt images. Good requests sent
alongside the bad ones are all answered correctly."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from models.backbone import Backbone
from tests.service.conftest import (
    assert_matches,
    image_bytes,
    make_learner,
    multipart,
    offline_scores,
    running,
    server_settings,
    write_checkpoint,
)
from tests.service.learners import SlowImage

LABELS = ["cat", "dog"]


def png(width: int, height: int, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def error_of(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error"} and {"code", "type", "message"} <= set(body["error"]), body
    return response.status_code, body["error"]["message"]


async def good_requests_meanwhile(client: httpx.AsyncClient, blob: bytes, count: int) -> list[httpx.Response]:
    return [await client.post("/classify", **multipart([blob], LABELS)) for _ in range(count)]


def test_each_limit_answers_with_its_status_and_names_the_limit(
    tmp_path: Path, tiny_backbone: Backbone
) -> None:
    settings = server_settings(
        tmp_path,
        max_body_bytes=300_000,
        max_images=3,
        max_image_pixels=1_000_000,
        max_labels=4,
        max_label_chars=30,
        max_templates=2,
        image_formats="PNG,JPEG",
    )
    ok = image_bytes(5)
    jpeg = image_bytes(6, fmt="JPEG")
    cases: dict[str, tuple[dict[str, Any], int, str]] = {
        "body": (
            {"content": b"x" * 400_000, "headers": {"content-type": "image/png"}},
            413,
            "max_body_bytes=300000",
        ),
        "images": (multipart([ok] * 4, LABELS), 413, "max_images=3"),
        "bomb": (multipart([png(4000, 4000)], LABELS), 413, "max_image_pixels=1000000"),
        "labels": (multipart([ok], ["a", "b", "c", "d", "e"]), 422, "max_labels=4"),
        "label length": (multipart([ok], ["x" * 31]), 422, "max_label_chars=30"),
        "templates": (multipart([ok], LABELS, templates=["{}"] * 3), 422, "max_templates=2"),
        "bad template": (multipart([ok], LABELS, templates="no placeholder"), 422, "'{}'"),
        "top_k": (multipart([ok], LABELS, top_k=0), 422, "top_k"),
        "not an image": (multipart([b"hello, world"], LABELS), 415, "PNG, JPEG"),
        "format": (multipart([image_bytes(7, fmt="BMP")], LABELS), 415, "BMP is not accepted"),
        "content type": (
            {"content": b"{}", "headers": {"content-type": "text/plain"}},
            415,
            "multipart/form-data",
        ),
        "truncated": (multipart([jpeg[: len(jpeg) // 2]], LABELS), 400, "truncated"),
        "base64": ({"json": {"images": ["***"], "labels": LABELS}}, 400, "base64"),
        "json": ({"content": b"{", "headers": {"content-type": "application/json"}}, 400, "JSON"),
        "json schema": ({"json": {"images": "x", "labels": LABELS}}, 422, "images"),
        "no labels": (multipart([ok]), 422, "pass labels"),
        "unknown model": (multipart([ok], LABELS, model="nope"), 404, "unknown model 'nope'"),
    }

    async def scenario(url: str) -> tuple[dict[str, httpx.Response], list[httpx.Response]]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            good = asyncio.create_task(good_requests_meanwhile(client, ok, 20))
            bad = {name: await client.post("/classify", **kwargs) for name, (kwargs, _, _) in cases.items()}
            return bad, await good

    with running(settings) as server:
        bad, good = asyncio.run(scenario(server.url))
        after = httpx.post(server.url + "/classify", **multipart([ok], LABELS))

    for name, (_, status, words) in cases.items():
        code, message = error_of(bad[name])
        assert code == status and words in message, (name, code, message)
    expected = offline_scores(tiny_backbone, None, ok, LABELS)
    for response in [*good, after]:
        assert response.status_code == 200
        assert_matches(response.json()["results"][0], expected)


def test_full_queue_answers_429_with_retry_after_and_queued_requests_still_succeed(
    tmp_path: Path, tiny_backbone: Backbone
) -> None:
    # Batches wait up to 1.5 s to fill 8 images, so 4 single-image requests sit in the queue.
    settings = server_settings(tmp_path, max_batch_size=8, max_wait_ms=1500, max_queue_images=4)
    blob = image_bytes(9)

    async def scenario(url: str) -> tuple[list[httpx.Response], httpx.Response, float]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            queued = [
                asyncio.create_task(client.post("/classify", **multipart([blob], LABELS))) for _ in range(4)
            ]
            await wait_for_queue(client, 4)
            loop = asyncio.get_running_loop()
            started = loop.time()
            refused = await client.post("/classify", **multipart([blob], LABELS))
            refused_after = loop.time() - started
            return list(await asyncio.gather(*queued)), refused, refused_after

    with running(settings) as server:
        queued, refused, refused_after = asyncio.run(scenario(server.url))
        metrics = httpx.get(server.url + "/metrics").text

    code, message = error_of(refused)
    assert code == 429 and "max_queue_images=4" in message
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused_after < 0.5, "a full queue must refuse at once, not after waiting"
    expected = offline_scores(tiny_backbone, None, blob, LABELS)
    for response in queued:
        assert response.status_code == 200
        assert_matches(response.json()["results"][0], expected)
    assert 'clipserve_rejected_requests_total{reason="queue_full"} 1.0' in metrics


async def wait_for_queue(client: httpx.AsyncClient, images: int) -> None:
    for _ in range(200):
        text = (await client.get("/metrics")).text
        if f'clipserve_queue_depth{{lane="shared"}} {float(images)}' in text:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the queue never held {images} images")


def test_deadline_answers_504_in_a_slow_lane_while_the_shared_lane_keeps_serving(
    tmp_path: Path, tiny_backbone: Backbone, methods: Any
) -> None:
    methods(SlowImage)
    write_checkpoint(tmp_path / "slow.safetensors", make_learner(tiny_backbone, seed=1, method=SlowImage))
    stock = make_learner(tiny_backbone, seed=2)
    write_checkpoint(tmp_path / "stock.safetensors", stock)
    settings = server_settings(tmp_path, request_timeout_s=0.5)
    blob = image_bytes(4)

    async def scenario(url: str) -> tuple[list[httpx.Response], list[httpx.Response], float]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            loop = asyncio.get_running_loop()
            started = loop.time()
            slow = [
                asyncio.create_task(client.post("/classify", **multipart([blob], model="slow")))
                for _ in range(3)
            ]
            fast = [await client.post("/classify", **multipart([blob], model="stock")) for _ in range(10)]
            slow_answers = list(await asyncio.gather(*slow))
            return slow_answers, fast, loop.time() - started

    with running(settings) as server:
        slow, fast, elapsed = asyncio.run(scenario(server.url))
        metrics = httpx.get(server.url + "/metrics").text

    for response in slow:
        code, message = error_of(response)
        assert code == 504 and "request_timeout_s=0.5" in message
    assert elapsed < 3, "timed-out requests must be answered at their deadline"
    expected = offline_scores(tiny_backbone, stock, blob, ["cat", "dog", "bird", "fish", "horse"])
    for response in fast:
        assert response.status_code == 200
        assert_matches(response.json()["results"][0], expected)
    assert 'clipserve_rejected_requests_total{reason="timeout"} 3.0' in metrics


def test_json_and_raw_bodies_give_the_same_answer_as_multipart(tmp_path: Path) -> None:
    blob = image_bytes(12)
    with running(server_settings(tmp_path)) as server, httpx.Client(base_url=server.url) as client:
        answers = [
            client.post("/classify", **multipart([blob], LABELS, top_k=1)),
            client.post(
                "/classify", json={"images": [base64.b64encode(blob).decode()], "labels": LABELS, "top_k": 1}
            ),
            client.post(
                "/classify",
                json={
                    "images": ["data:image/png;base64," + base64.b64encode(blob).decode()],
                    "labels": LABELS,
                    "top_k": 1,
                },
            ),
            client.post(
                "/classify",
                params={"labels": LABELS, "top_k": 1},
                content=blob,
                headers={"content-type": "image/png"},
            ),
        ]
    assert [a.status_code for a in answers] == [200] * 4
    assert all(a.json() == answers[0].json() for a in answers)
    assert len(answers[0].json()["results"][0]["predictions"]) == 1
