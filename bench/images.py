"""Photo-like JPEGs made in memory (no files, no network), for the ceiling bench and the decode tests.

Random noise compresses badly and is nothing like a photo (a 640x480 noise JPEG is ~250 KB); these
are smooth gradients with a few flat shapes and mild grain, ~40-60 KB at 640x480 and quality 90,
like the camera photos the decode targets are about.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 3)
    channels = [127 + 100 * np.sin(x / width * 3 + y / height * 2 + p) for p in phase]
    pixels = np.stack(channels, axis=-1)  # [H, W, 3]
    for _ in range(8):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(0.03, 0.2) * min(width, height)
        pixels[(x - cx) ** 2 + (y - cy) ** 2 < radius**2] = rng.uniform(0, 255, 3)
    pixels += rng.normal(0, 3, pixels.shape)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str = "JPEG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def photo_jpeg(width: int, height: int, seed: int = 0, quality: int = 90, **options: Any) -> bytes:
    return encode(photo(width, height, seed), "JPEG", quality=quality, **options)
