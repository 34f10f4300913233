"""The tensor decode path (service.engine.device_decode) with device=cpu: torchvision's libjpeg-turbo decoder
and the resize as tensor ops, i.e. the code the GPU runs with nvJPEG, minus nvJPEG. It must give
nearly the Pillow path's pixels, send everything else to Pillow, and refuse bad input with exactly
the Pillow path's errors."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence

import pytest
import torch
from PIL import Image

from bench.images import encode, photo, photo_jpeg
from models.backbone import Backbone, Preprocessing
from service.engine.decode import DecodeLimits, Decoder, Normalise
from service.engine.device_decode import (
    DEVICE,
    PILLOW,
    DeviceDecoder,
    plan_routes,
    tensor_decodable,
    tensor_decode_problem,
)
from service.errors import ServiceError
from tests.reliability import corpus

LIMITS = DecodeLimits(max_pixels=3_000_000, formats=("JPEG", "PNG", "WEBP", "GIF", "BMP"))
SIZES = [(640, 480), (480, 640), (1920, 1080), (48, 40), (300, 300), (200, 37)]
CPU = torch.device("cpu")
# Measured with the bench.images photos: max 4 levels, mean 0.08 (S=32) / 0.15 (S=224) levels.
MAX_PIXEL_DIFF, MEAN_PIXEL_DIFF = 8, 0.5


def preprocessing(size: int, mode: str = "shortest") -> Preprocessing:
    return Preprocessing(size, (0.48, 0.46, 0.41), (0.27, 0.26, 0.28), "bicubic", mode)


def both(pre: Preprocessing, blobs: Sequence[bytes]) -> tuple[torch.Tensor, torch.Tensor]:
    """(Pillow path, tensor path) pixels, each [N, 3, S, S] uint8."""

    async def run() -> tuple[torch.Tensor, torch.Tensor]:
        pillow = Decoder(pre, LIMITS, 2)
        tensor = DeviceDecoder(Decoder(pre, LIMITS, 2), CPU)
        try:
            return (await pillow.decode(blobs)).data, (await tensor.decode(blobs)).data
        finally:
            pillow.close()
            tensor.close()

    return asyncio.run(run())


def outcome(
    decoder_kind: str, blobs: Sequence[bytes], gpu_pixels: int = 1 << 26
) -> tuple[str, str] | torch.Tensor:
    async def run() -> torch.Tensor:
        pillow = Decoder(preprocessing(32), LIMITS, 2)
        decoder = pillow if decoder_kind == "pillow" else DeviceDecoder(pillow, CPU, gpu_pixels)
        try:
            return (await decoder.decode(blobs)).data
        finally:
            decoder.close()

    try:
        return asyncio.run(run())
    except ServiceError as error:
        return type(error).__name__, error.message


@pytest.mark.parametrize("size,mode", [(32, "shortest"), (224, "shortest"), (224, "squash")])
def test_tensor_resize_is_within_a_few_levels_of_pillow(size: int, mode: str) -> None:
    blobs = [photo_jpeg(w, h, seed) for seed, (w, h) in enumerate(SIZES)]
    pillow, tensor = both(preprocessing(size, mode), blobs)
    assert pillow.shape == tensor.shape == (len(SIZES), 3, size, size)
    diff = (pillow.int() - tensor.int()).abs().float()
    assert diff.max() <= MAX_PIXEL_DIFF and diff.mean() <= MEAN_PIXEL_DIFF, (diff.max(), diff.mean())
    assert diff.mean() > 0  # two implementations: if this is 0, the test is comparing one with itself


def test_tensor_path_changes_the_tiny_models_cosines_by_less_than_1e3(tiny_backbone: Backbone) -> None:
    pre = tiny_backbone.preprocessing
    pillow, tensor = both(pre, [photo_jpeg(w, h, seed) for seed, (w, h) in enumerate(SIZES)])
    normalise = Normalise(pre, CPU)
    classes = torch.nn.functional.normalize(torch.randn(10, tiny_backbone.embed_dim), dim=-1)
    expected = tiny_backbone.encode_images(normalise(pillow)) @ classes.t()  # [N, 10]
    got = tiny_backbone.encode_images(normalise(tensor)) @ classes.t()
    assert (expected - got).abs().max() < 1e-3


def test_only_complete_baseline_rgb_or_grey_jpegs_go_to_the_tensor_decoder() -> None:
    image = photo(64, 48)
    cases = {
        "baseline": (photo_jpeg(64, 48), True),
        "grey": (encode(image.convert("L"), "JPEG"), True),
        "png": (encode(image, "PNG"), False),
        "webp": (encode(image, "WEBP"), False),
        "cmyk": (encode(image.convert("CMYK"), "JPEG"), False),
        "progressive": (photo_jpeg(64, 48, progressive=True), False),
        "cut short": (photo_jpeg(64, 48)[:-200], False),
    }
    for name, (blob, expected) in cases.items():
        assert tensor_decodable(Image.open(io.BytesIO(blob)), blob) is expected, name
    routes = [DEVICE if case[1] else PILLOW for case in cases.values()]
    assert plan_routes([case[0] for case in cases.values()], LIMITS) == routes
    assert plan_routes([photo_jpeg(64, 48), corpus.png_claiming(5000, 5000)], LIMITS) is None


def test_a_mixed_request_keeps_its_order_and_pillow_rows_are_exact() -> None:
    image = photo(120, 90, seed=3)
    blobs = [photo_jpeg(64, 48, 1), encode(image, "PNG"), photo_jpeg(90, 60, 2), encode(image, "GIF")]
    pillow, tensor = both(preprocessing(32), blobs)
    assert torch.equal(pillow[1], tensor[1]) and torch.equal(pillow[3], tensor[3])  # Pillow rows
    for row in (0, 2):
        assert (pillow[row].int() - tensor[row].int()).abs().max() <= MAX_PIXEL_DIFF


def test_grey_jpegs_become_the_same_rgb_as_pillow() -> None:
    blob = encode(photo(100, 80).convert("L"), "JPEG")
    pillow, tensor = both(preprocessing(32), [blob])
    assert torch.equal(tensor[0, 0], tensor[0, 1]) and torch.equal(tensor[0, 1], tensor[0, 2])
    assert (pillow.int() - tensor.int()).abs().max() <= MAX_PIXEL_DIFF


@pytest.mark.parametrize(
    "blobs",
    [
        [photo_jpeg(64, 48)[:-300]],  # truncated
        [photo_jpeg(64, 48), photo_jpeg(64, 48)[:600] + b"\x00" * 300 + b"\xff\xd9"],  # garbage scan data
        [b"\xff\xd8\xff\xe0 not really a jpeg \xff\xd9"],  # corrupt header
        [photo_jpeg(64, 48), encode(photo(16, 16), "TIFF")],  # format not accepted
        [photo_jpeg(64, 48), corpus.png_claiming(5000, 5000)],  # too many pixels, from the header
        [photo_jpeg(64, 48), b""],
        [photo_jpeg(64, 48), encode(photo(16, 16), "PNG")[:40]],  # truncated PNG next to a good JPEG
    ],
    ids=["truncated", "scan-garbage", "header", "tiff", "bomb", "empty", "png-cut"],
)
@pytest.mark.parametrize("gpu_pixels", [1 << 26, 1], ids=["budget", "all-drafted"])
def test_bad_input_gets_exactly_the_pillow_paths_answer(blobs: list[bytes], gpu_pixels: int) -> None:
    pillow, tensor = outcome("pillow", blobs), outcome("tensor", blobs, gpu_pixels)
    assert not isinstance(pillow, torch.Tensor)  # every case is refused by the Pillow path
    assert tensor == pillow


def test_tensor_decoding_works_on_the_cpu() -> None:
    assert tensor_decode_problem(CPU) is None
