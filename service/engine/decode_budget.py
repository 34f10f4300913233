"""How much of one request nvJPEG may decode: a per-request pixel budget (`max_gpu_decode_pixels`).

The GPU path decodes every routed JPEG of a request at full size in one nvJPEG batch, then resizes
on the device; the caching allocator keeps the largest such request's blocks reserved afterwards.
One request of 32 camera photos (24 MP each, within max_image_pixels) would take 768 MP x 3 bytes
decoded plus the float copy the CUDA resize makes (torchvision has no uint8 CUDA bicubic): over
10 GB held by one request. So per request the JPEGs are sorted by size and the smallest go to
nvJPEG while their pixels fit the budget; the rest are decoded by Pillow on the CPU pool with JPEG
draft mode, which has libjpeg scale the DCT by 1/2, 1/4 or 1/8 while decoding (Pillow docs,
Image.draft), to the smallest such size that keeps both sides at least twice the model's input, and
then resized like every Pillow row. Large images are the ones worth drafting: their decode shrinks
the most. Measured on the development CPU (bench.images photos, `python` one-off, S = 224): a
4000x3000 JPEG decodes + resizes in 26 ms drafted against 154 ms in full; against the full decode
the drafted rows differ by at most 7 levels, 0.2 on average (1920x1080, 4000x3000, 3000x4000), as
close as the GPU path's tensor resize is to Pillow's (docs/FAST_PATH.md). Drafting to 1x the input
instead (18 ms) let DCT scaling set the result: up to 38 levels off (640x480 at 1/2 scale).

Sizes come from the header the router has already parsed (no pixel data): `header_pixels`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from service.engine.decode import DecodeLimits, read_header
from service.errors import CorruptImage

DRAFT_MARGIN = 2  # drafted images keep both sides >= 2 x the model's input: the resize filter decides


def header_pixels(image: Image.Image) -> int:
    """Pixels the image decodes to, from its header (Pillow opens lazily: no pixel data is read)."""
    width, height = image.size
    return width * height


def over_budget(pixels: Sequence[int], budget: int) -> set[int]:
    """Indices (into `pixels`) that do not fit: smallest first, as many as fit in `budget` stay."""
    spent, refused = 0, set()
    for i in sorted(range(len(pixels)), key=lambda i: pixels[i]):
        if spent + pixels[i] <= budget:
            spent += pixels[i]
        else:
            refused.add(i)
    return refused


def open_drafted(data: bytes, index: int, limits: DecodeLimits, size: int) -> Image.Image:
    """The image, set to decode at the smallest JPEG scale (1, 1/2, 1/4, 1/8) that keeps both sides
    >= DRAFT_MARGIN x `size`; the same limits and errors as the Pillow path. Other formats ignore
    the draft."""
    image = read_header(data, index, limits)
    image.draft(None, (DRAFT_MARGIN * size, DRAFT_MARGIN * size))
    return image


def decode_drafted(
    data: bytes, index: int, limits: DecodeLimits, resize: Callable, size: int
) -> torch.Tensor:
    """One encoded image -> [3, S, S] uint8 through a reduced-size JPEG decode (CPU pool)."""
    image = open_drafted(data, index, limits, size)
    try:
        rgb = image.convert("RGB")  # decodes the pixel data, at the draft scale
    except Exception as error:  # as service.engine.decode.decode_image: the same 400
        raise CorruptImage(f"image {index}: corrupt or truncated {image.format} data ({error})") from error
    return pil_to_tensor(resize(rgb))  # [3, S, S] uint8
