"""The Pillow decode path routes JPEG and PNG by their header bytes: limits are checked there, and
Pillow opens them with one plugin. Errors and pixels are those of the path before."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from service.engine import decode as decode_module
from service.engine.decode import DecodeLimits, check_header, decode_image, read_header
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
