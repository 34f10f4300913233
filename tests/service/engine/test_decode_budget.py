"""The per-request GPU decode budget (service/engine/decode_budget.py): the smallest JPEGs stay on
the tensor decoder while their pixels fit `max_gpu_decode_pixels`; the others are decoded by Pillow
at reduced size (JPEG draft), close to a full decode. Run with device=cpu (torchvision's
libjpeg-turbo standing in for nvJPEG); the `gpu` test runs a CUDA service with a small budget."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
import torch

import service.engine.device_decode as device_decode_module
from bench.images import encode, photo, photo_jpeg
from models.backbone import Backbone, Preprocessing
from service.engine.decode import DecodeLimits, Decoder
from service.engine.decode_budget import open_drafted, over_budget
from service.engine.device_decode import DEVICE, DRAFT, PILLOW, DeviceDecoder, plan_routes
from service.settings import DEFAULT_GPU_DECODE_PIXELS, Settings
from tests.service.conftest import multipart, offline_scores, running, server_settings

LIMITS = DecodeLimits(max_pixels=40_000_000, formats=("JPEG", "PNG"))
PRE = Preprocessing(32, (0.48, 0.46, 0.41), (0.27, 0.26, 0.28))
CPU = torch.device("cpu")


def test_the_smallest_images_fill_the_budget_the_rest_are_over() -> None:
    assert over_budget([100, 50, 400, 50], 200) == {2}
    assert over_budget([100, 50, 400, 50], 199) == {0, 2}  # 50 + 50 fit, then 100 does not
    assert over_budget([300], 200) == {0} and over_budget([], 10) == set()


def test_routes_draft_the_jpegs_over_the_budget_and_leave_the_rest() -> None:
    blobs = [
        photo_jpeg(640, 480, 1),
        encode(photo(64, 48), "PNG"),
        photo_jpeg(64, 48, 2),
        photo_jpeg(320, 240, 3),
    ]
    budget = 64 * 48 + 320 * 240  # the two small JPEGs fit, the 640x480 does not
    assert plan_routes(blobs, LIMITS, budget) == [DRAFT, PILLOW, DEVICE, DEVICE]
    assert plan_routes(blobs, LIMITS) == [DEVICE, PILLOW, DEVICE, DEVICE]  # the default holds them all


@pytest.mark.parametrize("size,decoded", [(32, (300, 225)), (224, (600, 450))])
def test_draft_decodes_at_the_smallest_scale_that_keeps_twice_the_input(size: int, decoded: tuple) -> None:
    """2400x1800: for S=32 (>= 64 a side) libjpeg decodes at 1/8; for S=224 (>= 448) at 1/4."""
    image = open_drafted(photo_jpeg(2400, 1800, 4), 0, LIMITS, size)
    assert image.size == decoded and min(image.size) >= 2 * size
    assert image.convert("RGB").size == decoded  # the pixel data really is decoded at that size


def decode_both(blobs: Sequence[bytes], budget: int, monkeypatch: pytest.MonkeyPatch) -> tuple:
    """(Pillow path pixels, tensor path pixels under `budget`, the images the tensor decoder got)."""
    seen: list[int] = []
    real = device_decode_module.decode_jpegs

    def spy(jpegs: Sequence[bytes], device: torch.device) -> list[torch.Tensor]:
        seen.extend(len(blob) for blob in jpegs)
        return real(jpegs, device)

    monkeypatch.setattr(device_decode_module, "decode_jpegs", spy)

    async def run() -> tuple[torch.Tensor, torch.Tensor]:
        pillow, tensor = Decoder(PRE, LIMITS, 2), DeviceDecoder(Decoder(PRE, LIMITS, 2), CPU, budget)
        try:
            return (await pillow.decode(blobs)).data, (await tensor.decode(blobs)).data
        finally:
            pillow.close()
            tensor.close()

    full, tensor = asyncio.run(run())
    return full, tensor, seen


def test_a_request_over_budget_decodes_its_big_jpegs_with_pillow_close_to_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blobs = [photo_jpeg(1920, 1080, 5), photo_jpeg(64, 48, 6), photo_jpeg(4000, 3000, 7)]
    full, tensor, seen = decode_both(blobs, 100_000, monkeypatch)
    assert seen == [len(blobs[1])]  # only the small JPEG reached the tensor decoder
    assert tensor.shape == full.shape == (3, 3, 32, 32)
    diff = (full.int() - tensor.int()).abs().float()
    assert diff.max() <= 8 and diff.mean() <= 0.5, (diff.max(), diff.mean())  # measured: max 2, mean 0.16


def test_a_request_with_every_jpeg_over_budget_still_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = [photo_jpeg(1920, 1080, 8), encode(photo(90, 60), "PNG")]
    full, tensor, seen = decode_both(blobs, 1, monkeypatch)
    assert seen == [] and tensor.shape == (2, 3, 32, 32)
    assert torch.equal(full[1], tensor[1]) and (full[0].int() - tensor[0].int()).abs().max() <= 8


def test_the_budget_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().max_gpu_decode_pixels == DEFAULT_GPU_DECODE_PIXELS >= 32 * 1920 * 1080
    monkeypatch.setenv("CLIPSERVE_MAX_GPU_DECODE_PIXELS", "5000000")
    assert Settings().max_gpu_decode_pixels == 5_000_000
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        Settings(max_gpu_decode_pixels=0)


@pytest.mark.gpu
def test_a_cuda_service_with_a_small_budget_answers_like_the_cpu_reference(
    tmp_path: Path, tiny_backbone: Backbone
) -> None:
    images = [photo_jpeg(64, 48, 0), photo_jpeg(2400, 1800, 1), photo_jpeg(1920, 1080, 2)]
    labels = ["cat", "dog", "a red car"]
    settings = server_settings(tmp_path, device="cuda", max_gpu_decode_pixels=10_000)
    with running(settings) as server:
        assert server.state.runtime is not None
        decoder = server.state.runtime.decoder
        body = httpx.post(server.url + "/classify", **multipart(images, labels), timeout=30).json()
    assert type(decoder).__name__ == "DeviceDecoder" and decoder.max_pixels == 10_000  # type: ignore[attr-defined]
    for i, blob in enumerate(images):
        expected = offline_scores(tiny_backbone, None, blob, labels)  # Pillow (full decode) + fp32 on the CPU
        for prediction in body["results"][i]["predictions"]:
            assert abs(prediction["cosine"] - expected[prediction["label"]][1]) < 4e-2
