"""The Pillow decode path routes JPEG and PNG by their header bytes: limits are checked there, and
Pillow opens them with one plugin. Errors and pixels are those of the path before."""

from __future__ import annotations

import asyncio
import io
import math
import struct
import zlib

import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from models.backbone import Preprocessing
from service.engine import decode as decode_module
from service.engine.decode import (
    INLINE_PIXELS,
    DecodeLimits,
    Decoder,
    check_header,
    contiguous_slices,
    decode_image,
    read_header,
    request_pixels,
    rgb_tensor,
)
from service.engine.image_header import ImageHeader, read_image_header
from service.errors import CorruptImage, TooLarge, UnsupportedMedia

LIMITS = DecodeLimits(max_pixels=1_000_000, formats=("JPEG", "PNG"))


def encoded(size: tuple[int, int], fmt: str, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 60).convert(mode).save(buffer, format=fmt)  # noise: no tiny scan data
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture
def no_pillow_open(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("Pillow opened an image the header bytes had already refused")

    monkeypatch.setattr(decode_module.Image, "open", refuse)


@pytest.mark.usefixtures("no_pillow_open")
def test_a_bomb_is_refused_from_the_header_bytes() -> None:
    message = "image 2: 4000x4000 = 16000000 pixels exceeds max_image_pixels=1000000"
    with pytest.raises(TooLarge, match=message):
        check_header(png_claiming(4000, 4000), 2, LIMITS)
    with pytest.raises(TooLarge, match="max_image_pixels"):
        read_header(png_claiming(4000, 4000), 0, LIMITS)


@pytest.mark.usefixtures("no_pillow_open")
def test_a_format_outside_the_settings_is_refused_from_the_header_bytes() -> None:
    with pytest.raises(UnsupportedMedia, match=r"image 1: format PNG is not accepted \(image_formats=JPEG\)"):
        read_header(encoded((8, 8), "PNG"), 1, DecodeLimits(1_000_000, ("JPEG",)))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_jpeg_and_png_open_with_their_one_plugin(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real_open = Image.open

    def spy(fp: object, mode: str = "r", formats: list[str] | None = None) -> Image.Image:
        seen.append(formats)
        return real_open(fp, mode, formats)  # type: ignore[arg-type]

    monkeypatch.setattr(decode_module.Image, "open", spy)
    assert read_header(encoded((64, 48), fmt), 0, LIMITS).size == (64, 48)
    assert seen == [[fmt]]


def test_other_formats_still_go_to_pillow() -> None:
    with pytest.raises(UnsupportedMedia, match="format BMP is not accepted"):
        read_header(encoded((8, 8), "BMP"), 0, LIMITS)
    with pytest.raises(UnsupportedMedia, match="not an image in an accepted format"):
        read_header(b"hello, world", 0, LIMITS)
    assert read_header(encoded((8, 8), "BMP"), 0, DecodeLimits(100, ("BMP",))).size == (8, 8)


def test_broken_jpeg_and_png_keep_their_errors() -> None:
    jpeg, png = encoded((64, 48), "JPEG"), encoded((64, 48), "PNG")
    with pytest.raises(UnsupportedMedia, match="not an image in an accepted format"):
        read_header(jpeg[:3], 0, LIMITS)  # a signature with no header: Pillow cannot identify it
    with pytest.raises(CorruptImage, match="image 0: unreadable image header"):
        decode_image(jpeg[: jpeg.index(b"\xff\xc4") + 9], 0, LIMITS, lambda image: image)  # in a table
    with pytest.raises(CorruptImage, match="image 0: corrupt or truncated JPEG"):
        decode_image(jpeg[:-40], 0, LIMITS, lambda image: image)  # cut in the scan
    with pytest.raises(CorruptImage, match="corrupt or truncated PNG"):
        decode_image(png[: len(png) // 2], 0, LIMITS, lambda image: image)


def test_pixels_are_pillows() -> None:
    data = encoded((64, 48), "JPEG", mode="L")
    pixels = decode_image(data, 0, LIMITS, lambda image: image)
    expected = Image.open(io.BytesIO(data)).convert("RGB")
    assert pixels.shape == (3, 48, 64)
    assert pixels.permute(1, 2, 0).numpy().tobytes() == expected.tobytes()


def decoder(threads: int = 3) -> Decoder:
    return Decoder(Preprocessing(image_size=16, mean=(0.5,) * 3, std=(0.5,) * 3), LIMITS, threads)


def test_small_requests_decode_on_the_event_loop_without_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = decoder()
    monkeypatch.setattr(pool.pool, "submit", lambda *a, **k: pytest.fail("a thread hand-off"))
    thumbnails = [encoded((64, 48), "JPEG")] * (INLINE_PIXELS // (64 * 48))
    pixels = asyncio.run(pool.decode(thumbnails))
    assert pixels.data.shape == (len(thumbnails), 3, 16, 16)
    expected = decode_image(thumbnails[0], 0, LIMITS, pool.resize)
    assert all(torch.equal(row, expected) for row in pixels.data)


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([(64 + i, 48) for i in range(10)], [range(0, 10)]),  # ~32,000 pixels: one job
        ([(600, 500)] * 4, [range(0, 1), range(1, 2), range(2, 4)]),  # 1.2 M pixels: one per thread
        ([(600, 500)] + [(64, 48)] * 5, [range(0, 3), range(3, 6)]),  # 315,360 pixels: two jobs
    ],
)
def test_pool_jobs_follow_the_pixels(
    sizes: list[tuple[int, int]], expected: list[range], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decode_module, "available_cpus", lambda: 16)
    pool = decoder(threads=3)
    jobs = []
    submit = pool.pool.submit
    monkeypatch.setattr(pool.pool, "submit", lambda fn, *args: jobs.append(args[-1]) or submit(fn, *args))
    blobs = [encoded(size, "JPEG") for size in sizes]
    pixels = asyncio.run(pool.decode(blobs))
    assert jobs == expected
    for i, blob in enumerate(blobs):
        assert torch.equal(pixels.data[i], decode_image(blob, i, LIMITS, pool.resize))


def test_decode_threads_are_capped_at_the_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode_module, "available_cpus", lambda: 2)
    assert decoder(threads=4).threads == 2 and decoder(threads=1).threads == 1
    monkeypatch.setattr(decode_module, "available_cpus", lambda: 16)
    assert decoder(threads=4).threads == 4


def test_a_header_without_a_size_means_a_job_per_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode_module, "available_cpus", lambda: 16)
    assert decoder(threads=3).jobs(math.inf) == 3
    assert decoder(threads=3).jobs(INLINE_PIXELS + 1) == 1


@pytest.mark.parametrize("count", [2, 10])  # inline and on the pool
def test_the_first_bad_image_is_the_error(count: int) -> None:
    good = encoded((64, 48), "JPEG")
    bad = good[:-40]  # its header gives a size (so 2 images stay inline); its scan is cut short
    blobs = [good] * count
    blobs[count - 1] = blobs[1] = bad
    with pytest.raises(CorruptImage, match="image 1: corrupt or truncated JPEG"):
        asyncio.run(decoder().decode(blobs))


def test_an_image_without_a_readable_header_size_goes_to_the_pool() -> None:
    assert request_pixels([read_image_header(encoded((8, 8), "BMP"))]) == math.inf
    assert request_pixels([read_image_header(encoded((64, 48), "PNG"))] * 2) == 2 * 64 * 48


@pytest.mark.parametrize("count", [2, 12])  # inline, and on the pool
def test_each_header_is_read_once_per_request(count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []

    def counted(data: bytes) -> ImageHeader:
        reads.append(len(data))
        return read_image_header(data)

    monkeypatch.setattr(decode_module, "read_image_header", counted)
    blobs = [encoded((64 + i, 48), "JPEG") for i in range(count)]
    pixels = asyncio.run(decoder().decode(blobs))
    assert len(pixels) == count and len(reads) == count


def test_contiguous_slices() -> None:
    assert contiguous_slices(1, 4) == [range(0, 1)]
    assert contiguous_slices(32, 4) == [range(0, 8), range(8, 16), range(16, 24), range(24, 32)]
    assert sum(len(part) for part in contiguous_slices(7, 3)) == 7


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "I;16"])
@pytest.mark.parametrize("size", [(1, 1), (7, 3), (32, 32), (33, 17)])
def test_rgb_tensor_equals_pil_to_tensor(mode: str, size: tuple[int, int]) -> None:
    image = Image.effect_noise(size, 60).convert(mode)
    assert torch.equal(rgb_tensor(image), pil_to_tensor(image))
