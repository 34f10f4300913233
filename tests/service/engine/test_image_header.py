"""read_image_header: the same format and size as Pillow on real files, and never an exception."""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from service.engine.image_header import ImageHeader, read_image_header

SIZES = [(1, 1), (64, 48), (48, 64), (333, 17), (1024, 769), (4097, 3)]


def encoded(mode: str, size: tuple[int, int], fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, "white" if mode != "CMYK" else (0, 0, 0, 0)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def exif() -> bytes:
    tags = Image.Exif()
    tags[0x010F] = "clipserve test camera"  # Make
    tags[0x0112] = 6  # Orientation: the stored size is still the frame's (no rotation applied)
    return tags.tobytes()


JPEG_VARIANTS = {
    "baseline": ("RGB", {}),
    "progressive": ("RGB", {"progressive": True}),
    "optimised": ("RGB", {"optimize": True, "quality": 40}),
    "exif": ("RGB", {"exif": exif()}),
    "icc": ("RGB", {"icc_profile": b"\x00" * 70_000}),  # split over two APP2 segments
    "grayscale": ("L", {}),
    "cmyk": ("CMYK", {}),
    "subsampling-444": ("RGB", {"subsampling": 0}),
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("variant", sorted(JPEG_VARIANTS))
def test_jpeg_size_matches_pillow(variant: str, size: tuple[int, int]) -> None:
    mode, options = JPEG_VARIANTS[variant]
    data = encoded(mode, size, "JPEG", **options)
    header = read_image_header(data)
    pillow = Image.open(io.BytesIO(data))
    assert (header.format, header.width, header.height) == ("jpeg", *pillow.size)
    assert header.progressive == bool(pillow.info.get("progressive") or pillow.info.get("progression"))
    assert header.channels == len(pillow.getbands())
    assert read_image_header(memoryview(data)) == header  # the multipart path hands memoryviews


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "1", "I;16"])
def test_png_size_matches_pillow(mode: str, size: tuple[int, int]) -> None:
    data = encoded(mode, size, "PNG")
    header = read_image_header(data)
    assert (header.format, header.width, header.height) == ("png", *Image.open(io.BytesIO(data)).size)
    assert header.pixels == size[0] * size[1]


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "WEBP", "TIFF"])
def test_other_formats_are_other(fmt: str) -> None:
    assert read_image_header(encoded("RGB", (64, 48), fmt)) == ImageHeader("other", None, None)


def test_fill_bytes_and_junk_between_segments() -> None:
    data = encoded("RGB", (64, 48), "JPEG")
    # T.81 B.1.1.2: any number of 0xFF fill bytes may precede a marker; junk is skipped by libjpeg
    after_app0 = 4 + struct.unpack(">H", data[4:6])[0]
    padded = data[:2] + b"\xff\xff\xff" + data[2:]
    junk = data[:after_app0] + b"\x00junk" + data[after_app0:]
    for variant in (padded, junk):
        assert Image.open(io.BytesIO(variant)).size == (64, 48)
        assert read_image_header(variant) == read_image_header(data)


def test_standalone_markers_have_no_length() -> None:
    data = encoded("RGB", (64, 48), "JPEG")
    with_rst = data[:2] + b"\xff\xd0\xff\x01" + data[2:]  # RST0 and TEM carry no length field
    assert (read_image_header(with_rst).width, read_image_header(with_rst).height) == (64, 48)


def test_a_large_app_segment_is_skipped_by_its_length() -> None:
    data = encoded("RGB", (64, 48), "JPEG")
    # an APP1 segment whose payload holds a fake frame header: skipped, never read as one
    fake = b"\xff\xc0\x00\x11\x08\x99\x99\x99\x99\x03" + b"\x00" * 60_000
    app1 = b"\xff\xe1" + struct.pack(">H", len(fake) + 2) + fake
    assert read_image_header(data[:2] + app1 + data[2:]).width == 64


def jpeg_frame(width: int, height: int, marker: int = 0xC0) -> bytes:
    frame = struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + bytes([0xFF, marker]) + struct.pack(">H", len(frame) + 2) + frame + b"\xff\xda"


def test_hand_made_frames() -> None:
    assert read_image_header(jpeg_frame(65_000, 65_000)).pixels == 65_000**2  # a bomb, seen early
    assert read_image_header(jpeg_frame(70, 50, 0xC2)) == ImageHeader("jpeg", 70, 50, True, 1)
    assert read_image_header(jpeg_frame(70, 50, 0xC1)).progressive is False
    assert read_image_header(jpeg_frame(70, 50, 0xC4)).width is None  # DHT is not a frame header
    assert read_image_header(jpeg_frame(0, 50)).width is None  # zero: not a size we can trust
    assert read_image_header(jpeg_frame(70, 0)).height is None  # Y=0: height comes later (DNL)


def test_two_frame_headers_give_no_size() -> None:
    first, second = jpeg_frame(10, 10), jpeg_frame(60_000, 60_000)
    assert read_image_header(first[:-2] + second[2:]) == ImageHeader("jpeg", None, None)


def test_a_cut_short_header_keeps_the_format_without_a_size() -> None:
    data = encoded("RGB", (64, 48), "JPEG", exif=exif())
    frame_at = data.index(b"\xff\xc0")
    for cut in (3, 4, 10, frame_at, frame_at + 5, frame_at + 9):
        assert read_image_header(data[:cut]) == ImageHeader("jpeg", None, None), cut
    png = encoded("RGB", (64, 48), "PNG")
    for cut in (8, 16, 23):
        assert read_image_header(png[:cut]) == ImageHeader("png", None, None), cut
    assert read_image_header(png[:8] + b"\x00\x00\x00\rIHDR" + b"\x00" * 8) == ImageHeader("png", None, None)


def test_signatures_alone_decide_the_format() -> None:
    assert read_image_header(b"").format == "other"
    assert read_image_header(b"\xff\xd8").format == "other"  # Pillow wants FF D8 FF as well
    assert read_image_header(b"\x89PNG\r\n\x1a").format == "other"
    assert read_image_header(b"GIF89a" + b"\x00" * 20).format == "other"


def test_crafted_marker_floods_are_bounded() -> None:
    # megabytes of TEM markers: the walk stops after MAX_SEGMENTS instead of looping per byte
    assert read_image_header(b"\xff\xd8" + b"\xff\x01" * 1_000_000) == ImageHeader("jpeg", None, None)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_junk_never_raises(data: bytes) -> None:
    header = read_image_header(data)
    assert header.format in ("jpeg", "png", "other")
    assert (header.width is None) == (header.height is None)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xc0", b"\xff\xd8\xff\xe0\x00"]),
    st.binary(max_size=200),
)
def test_junk_after_a_signature_never_raises(signature: bytes, rest: bytes) -> None:
    header = read_image_header(memoryview(signature + rest))
    assert header.format != "other"
    assert header.width is None or header.width > 0


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2000), st.binary(min_size=1, max_size=8))
def test_corrupted_real_jpegs_never_raise(offset: int, garbage: bytes) -> None:
    data = bytearray(encoded("RGB", (64, 48), "JPEG", exif=exif()))
    offset %= len(data)
    data[offset : offset + len(garbage)] = garbage
    read_image_header(bytes(data))
