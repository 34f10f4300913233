"""Format and size of an encoded image from its first bytes, without Pillow.

The request path needs only three facts before decoding: is it a JPEG, a PNG or something else,
and how many pixels will it decode to (the decompression-bomb limit). Pillow's `Image.open` learns
them by running its Python marker loop and building an Image object; here they come from a few
slices of the bytes. Formats, markers and field offsets:
- JPEG: ITU-T T.81 (1992), Annex B.1.1.2-B.1.1.3 (marker segments, fill bytes 0xFF before a
  marker) and B.2.2 (frame header: precision, lines Y, samples per line X, components).
- PNG: RFC 2083 / ISO 15948, section 3.1 (signature) and 4.1.1 (IHDR must come first: width,
  height as 4-byte big-endian integers, 13 data bytes).

Never raises: bytes that are not a recognised signature are format "other"; a recognised signature
whose header cannot be read (cut short, malformed, a zero or duplicated size) keeps its format with
`width`/`height` None, and the caller lets the real decoder report the error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

JPEG_SOI = b"\xff\xd8\xff"  # start of image + the first byte of the next marker (what Pillow checks)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# T.81 Table B.1: SOF0-3, 5-7, 9-11, 13-15 are frame headers; C4 (DHT), C8 (JPG), CC (DAC) are not
SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length field
SOS, EOI = 0xDA, 0xD9
MARKER = re.compile(rb"\xff+([^\xff])")  # fill bytes (T.81 B.1.1.2), then the marker code
MAX_SEGMENTS = 4096  # real files have tens (an ICC profile split in 64 KB chunks: a few hundred)


@dataclass(frozen=True)
class ImageHeader:
    format: Literal["jpeg", "png", "other"]
    width: int | None
    height: int | None
    progressive: bool = False  # JPEG: a progressive frame (SOF2/6/10/14)
    channels: int | None = None  # JPEG: components in the frame (1 grey, 3 YCbCr/RGB, 4 CMYK/YCCK)

    @property
    def pixels(self) -> int | None:
        return None if self.width is None or self.height is None else self.width * self.height


def read_image_header(data: bytes | memoryview) -> ImageHeader:
    """The format and size of an encoded image (see the module docstring); never raises."""
    view = memoryview(data).cast("B") if isinstance(data, memoryview) else data
    if view[:3] == JPEG_SOI:
        return _jpeg(view)
    if view[:8] == PNG_SIGNATURE:
        return _png(view)
    return ImageHeader("other", None, None)


def _png(data: bytes | memoryview) -> ImageHeader:
    # signature, then IHDR: length (4) = 13, type (4) = "IHDR", width (4), height (4), ...
    if len(data) < 24 or data[8:16] != b"\x00\x00\x00\rIHDR":
        return ImageHeader("png", None, None)
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if not 0 < width < 2**31 or not 0 < height < 2**31:  # RFC 2083 4.1.1: zero is invalid
        return ImageHeader("png", None, None)
    return ImageHeader("png", width, height)


def _jpeg(data: bytes | memoryview) -> ImageHeader:
    """Walk the marker segments from SOI to the first SOS; the frame header (SOFn) gives the size."""
    frame: ImageHeader | None = None
    position = 2
    for _ in range(MAX_SEGMENTS):  # bounds the work on crafted input (e.g. megabytes of FF01)
        # the next marker: junk before it is skipped, as libjpeg and Pillow do; then fill bytes
        found = MARKER.search(data, position)  # re searches memoryviews without a copy
        if found is None:
            break
        marker, position = found.group(1)[0], found.end()
        if marker in STANDALONE or marker == 0x00:  # no length field; 0xFF00 is a stuffed byte
            continue
        if marker in (SOS, EOI):
            break  # the entropy-coded data starts (or the image ends) after the frame header
        length = int.from_bytes(data[position : position + 2], "big")  # includes its own 2 bytes
        if length < 2:
            return _unknown_size()
        if marker in SOF_MARKERS:
            if frame is not None:  # two frame headers: the decoder refuses them, so don't guess
                return _unknown_size()
            frame = _frame(data[position + 2 : position + length], marker)
        position += length
    else:
        return _unknown_size()
    return frame if frame is not None else _unknown_size()


def _frame(segment: bytes | memoryview, marker: int) -> ImageHeader:
    # T.81 B.2.2: P (1), Y lines (2), X samples per line (2), Nf components (1), ...
    if len(segment) < 6:
        return _unknown_size()
    height, width = int.from_bytes(segment[1:3], "big"), int.from_bytes(segment[3:5], "big")
    if height == 0 or width == 0:  # Y = 0 defers the height to a DNL marker: let the decoder judge
        return _unknown_size()
    return ImageHeader("jpeg", width, height, marker in PROGRESSIVE_SOF, segment[5])


def _unknown_size() -> ImageHeader:
    return ImageHeader("jpeg", None, None)
