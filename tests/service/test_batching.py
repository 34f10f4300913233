"""Cross-request batching, end to end: concurrent requests share encoder passes (batch-size
metric), answers equal unbatched offline inference, and methods that change the image side or
condition the text on the image run in their own lanes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from models.backbone import Backbone
from tests.service.conftest import (
    CLASSES,
    assert_matches,
    image_bytes,
    make_learner,
    multipart,
    offline_scores,
    running,
    server_settings,
    write_checkpoint,
)
from tests.service.learners import ImageConditioned, ShiftedImage

LABELS = ["a red car", "a small boat", "tree"]


def batch_histogram(url: str) -> dict[str, dict[str, float]]:
    """lane -> {"count", "sum", "le=<bound>": cumulative count}."""
    lanes: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        if family.name != "clipserve_batch_size":
            continue
        for sample in family.samples:
            lane = lanes.setdefault(sample.labels["lane"], {})
            if sample.name.endswith("_bucket"):
                lane["le=" + sample.labels["le"]] = sample.value
            elif sample.name.endswith(("_count", "_sum")):
                lane[sample.name.rsplit("_", 1)[1]] = sample.value
    return lanes


async def fire(url: str, requests: list[dict[str, Any]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await asyncio.gather(*(client.post("/classify", **kwargs) for kwargs in requests))


def test_concurrent_requests_share_one_encoder_pass_and_match_unbatched(
    tmp_path: Path, tiny_backbone: Backbone
) -> None:
    coop = make_learner(tiny_backbone, seed=1)
    write_checkpoint(tmp_path / "pets.safetensors", coop)
    images = [image_bytes(seed) for seed in range(16)]
    settings = server_settings(tmp_path, max_batch_size=16, max_wait_ms=1000)
    with running(settings) as server:
        # Half the requests use the CoOp checkpoint (its own classes), half zero-shot with labels:
        # both are stock-image versions, so they may share a pass.
        requests = [
            multipart([blob], model="pets") if i % 2 else multipart([blob], LABELS, model="zeroshot")
            for i, blob in enumerate(images)
        ]
        responses = asyncio.run(fire(server.url, requests))
        shared = batch_histogram(server.url)["shared"]

    assert [r.status_code for r in responses] == [200] * 16
    assert shared["sum"] == 16
    assert shared["count"] < 16, f"no batching: {shared}"
    assert shared["le=8.0"] < shared["count"], f"no batch mixed both models: {shared}"
    for i, (blob, response) in enumerate(zip(images, responses, strict=True)):
        body = response.json()
        if i % 2:
            assert body["model"]["name"] == "pets"
            expected = offline_scores(tiny_backbone, coop, blob, CLASSES)
        else:
            assert body["model"]["name"] == "zeroshot"
            expected = offline_scores(tiny_backbone, None, blob, LABELS)
        assert_matches(body["results"][0], expected)


def test_multi_image_request_keeps_order(tmp_path: Path, tiny_backbone: Backbone) -> None:
    images = [image_bytes(seed, fmt=fmt) for seed, fmt in zip(range(3), ["PNG", "JPEG", "WEBP"], strict=True)]
    with running(server_settings(tmp_path)) as server:
        response = httpx.post(server.url + "/classify", **multipart(images, LABELS, top_k=2))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 3
    for blob, result in zip(images, results, strict=True):
        expected = offline_scores(tiny_backbone, None, blob, LABELS)
        best = sorted(expected, key=lambda label: -expected[label][0])[:2]
        assert [p["label"] for p in result["predictions"]] == best
        assert_matches(result, {label: expected[label] for label in best})


def test_custom_image_and_image_conditioned_methods_get_their_own_lanes(
    tmp_path: Path, tiny_backbone: Backbone, methods: Any
) -> None:
    methods(ShiftedImage, ImageConditioned)
    learners = {
        "stock": make_learner(tiny_backbone, seed=2),
        "shifted": make_learner(tiny_backbone, seed=3, method=ShiftedImage),
        "conditioned": make_learner(tiny_backbone, seed=4, method=ImageConditioned),
    }
    for name, learner in learners.items():
        write_checkpoint(tmp_path / f"{name}.safetensors", learner)
    images = [image_bytes(100 + seed) for seed in range(12)]
    names = list(learners)
    settings = server_settings(tmp_path, max_batch_size=8, max_wait_ms=600)
    with running(settings) as server:
        listing = {m["name"]: m["lane"] for m in httpx.get(server.url + "/v1/models").json()["data"]}
        requests = [
            multipart([blob], LABELS if i % 4 == 3 else (), model=names[i % 3])
            for i, blob in enumerate(images)
        ]
        # A label too long for the learned prompt fails its own request only, in either kind of lane.
        too_long = "a " * 95
        requests += [
            multipart([images[0]], [too_long, "cat"], model=name) for name in ("conditioned", "stock")
        ]
        responses = asyncio.run(fire(server.url, requests))
        lanes = batch_histogram(server.url)

    assert listing == {
        "zeroshot": "shared",
        "stock": "shared",
        "shifted": "custom",
        "conditioned": "conditioned",
    }
    responses, refused = responses[:12], responses[12:]
    for response in refused:
        assert response.status_code == 422 and "tokens" in response.json()["error"]["message"], response.text
    assert [r.status_code for r in responses] == [200] * 12
    # 4 images per model; the shared lane saw only the stock model's.
    # (+1 in the conditioned lane: the refused request's image went through it)
    assert lanes["shared"]["sum"] == 4 and lanes["custom"]["sum"] == 4 and lanes["conditioned"]["sum"] == 5
    assert lanes["custom"]["count"] < 4 and lanes["conditioned"]["count"] < 4
    for i, (blob, response) in enumerate(zip(images, responses, strict=True)):
        name = names[i % 3]
        labels = LABELS if i % 4 == 3 else CLASSES
        body = response.json()
        assert body["model"]["name"] == name
        expected = offline_scores(tiny_backbone, learners[name], blob, labels)
        assert_matches(body["results"][0], expected)
