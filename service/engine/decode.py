"""Image bytes -> resized uint8 pixels (Pillow, CPU threads); normalisation happens on the device.

Resizing (open_clip's eval resize + centre crop) and normalisation come from models/preprocess.py,
which training and offline evaluation use too, so all of them see the same pixels. Limits are
checked before any pixel data is decoded: a 100,000 x 100,000 PNG is refused from its header
(decompression bomb). This is the CPU path and the fallback of the GPU path
(service.engine.device_decode), which reads the same headers with `read_header` and hands Pillow
every image nvJPEG cannot or should not decode.
"""

from __future__ import annotations

import asyncio
import io
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.functional import pil_to_tensor

from models.backbone import Preprocessing
from models.preprocess import Normalise, resize_crop  # noqa: F401 (service.engine.batcher imports Normalise here)
from service.engine.image_header import ImageHeader, read_image_header
from service.errors import CorruptImage, TooLarge, UnsupportedMedia


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int
    formats: tuple[str, ...]


@dataclass(frozen=True)
class Pixels:
    """The decoded images of one request on their way to a lane."""

    data: torch.Tensor  # [n, 3, S, S] uint8, on the CPU (pinned when the service runs on CUDA) or the device
    ready: torch.cuda.Event | None = None  # recorded on the decode stream once `data` is written (GPU path)

    def __len__(self) -> int:
        return len(self.data)


class ImageDecoder(Protocol):
    """Pillow (`Decoder`) or nvJPEG with Pillow as fallback (service.engine.device_decode.DeviceDecoder)."""

    async def decode(self, blobs: Sequence[bytes]) -> Pixels: ...

    def close(self) -> None: ...


def resize_transform(preprocessing: Preprocessing) -> Callable[[Image.Image], Image.Image]:
    """open_clip's eval transform up to (not including) ToTensor + Normalize (models/preprocess.py)."""
    return resize_crop(preprocessing)


PILLOW_FORMAT = {"jpeg": "JPEG", "png": "PNG"}  # image_header's names -> Pillow's (and settings')


def check_header(
    data: bytes, index: int, limits: DecodeLimits, header: ImageHeader | None = None
) -> ImageHeader:
    """The format and size limits (415/413) from the header bytes alone, for JPEG and PNG whose
    size the header gives; other images get ImageHeader("other", ...) and are judged by Pillow.
    `header`: read_image_header(data), where the caller has read it already."""
    header = read_image_header(data) if header is None else header
    if header.width is None or header.height is None:
        return header
    name = PILLOW_FORMAT[header.format]
    if name not in limits.formats:
        raise UnsupportedMedia(
            f"image {index}: format {name} is not accepted (image_formats={','.join(limits.formats)})"
        )
    _check_pixels(header.width, header.height, index, limits)
    return header


def read_header(
    data: bytes, index: int, limits: DecodeLimits, header: ImageHeader | None = None
) -> Image.Image:
    """Parse the header only (no pixel data) and apply the format and size limits (415/413/400).

    JPEG and PNG are routed by their header bytes (service.engine.image_header): the limits are
    checked there, and Pillow opens the image with that one plugin instead of trying each in turn."""
    header = check_header(data, index, limits, header)
    formats = None if header.pixels is None else [PILLOW_FORMAT[header.format]]
    try:
        image = Image.open(io.BytesIO(data), formats=formats)
    except UnidentifiedImageError as error:
        raise UnsupportedMedia(
            f"image {index}: not an image in an accepted format ({', '.join(limits.formats)})"
        ) from error
    except Image.DecompressionBombError as error:
        raise TooLarge(
            f"image {index}: {error}; the limit is max_image_pixels={limits.max_pixels}"
        ) from error
    except Exception as error:  # malformed headers raise assorted types
        raise CorruptImage(f"image {index}: unreadable image header ({error})") from error
    if image.format not in limits.formats:  # e.g. an MPO (a JPEG with more frames), WebP, GIF
        raise UnsupportedMedia(
            f"image {index}: format {image.format} is not accepted (image_formats={','.join(limits.formats)})"
        )
    _check_pixels(*image.size, index, limits)
    return image


def _check_pixels(width: int, height: int, index: int, limits: DecodeLimits) -> None:
    if width * height > limits.max_pixels:
        raise TooLarge(
            f"image {index}: {width}x{height} = {width * height} pixels exceeds "
            f"max_image_pixels={limits.max_pixels}"
        )


def decode_image(
    data: bytes, index: int, limits: DecodeLimits, resize: Callable, header: ImageHeader | None = None
) -> torch.Tensor:
    """One encoded image -> [3, S, S] uint8; raises 415/413/400 errors naming image `index`.
    `header`: read_image_header(data), where the caller has read it already."""
    image = read_header(data, index, limits, header)
    try:
        rgb = image.convert("RGB")  # decodes the pixel data
    except Exception as error:  # truncated or corrupt data: OSError, SyntaxError, ValueError ...
        raise CorruptImage(f"image {index}: corrupt or truncated {image.format} data ({error})") from error
    return rgb_tensor(resize(rgb))  # [3, S, S] uint8


def rgb_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB image -> [3, H, W] uint8 view of one copy of its bytes: pil_to_tensor's values at a
    third of its cost (it goes through numpy's array interface, ~15 us more per image)."""
    if image.mode != "RGB":
        return pil_to_tensor(image)
    data = bytearray(image.tobytes())  # writable, as torch.frombuffer wants
    return torch.frombuffer(data, dtype=torch.uint8).view(image.height, image.width, 3).permute(2, 0, 1)


# Requests whose images hold at most this many pixels in all (by their headers: five 64x48
# thumbnails, one 128x128 image) are decoded on the event loop: ~0.1-0.3 ms of work, less CPU than
# handing it to a pool thread and back (a submit, a wake-up, a future and GIL hand-overs; measured
# with bench/overhead.py). Larger requests go to the pool, where Pillow's C code runs in parallel;
# each job costs a hand-off, so a request gets one job per PIXELS_PER_JOB of its pixels (at most one
# per thread): 32 thumbnails are one job, 32 photos one per thread.
INLINE_PIXELS = 16_384
PIXELS_PER_JOB = 262_144  # 512 x 512: a few ms of decoding, well above a hand-off's cost


class Decoder:
    """Decodes the images of one request: small ones on the event loop, others on a small thread
    pool in jobs of contiguous slices of the images, one per PIXELS_PER_JOB, at most one per thread.

    With `pin_memory` (the service runs on CUDA) the images are stacked straight into page-locked
    memory, so the lane's host-to-device copy is asynchronous (a copy from pageable memory is not).
    """

    def __init__(
        self, preprocessing: Preprocessing, limits: DecodeLimits, threads: int, pin_memory: bool = False
    ) -> None:
        # More decode threads than CPUs only add contention (GIL hand-overs, context switches):
        # 2-core machine, 8 clients of 32 thumbnails, decode_threads 4 -> 2 -> 1: 21.0 -> 17.3 ->
        # 13.3 ms CPU per request. So decode_threads is capped at the CPUs this process may use.
        self.threads = max(1, min(threads, available_cpus()))
        self.limits, self.pin_memory = limits, pin_memory
        self.resize = resize_transform(preprocessing)
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="decode")

    async def decode(self, blobs: Sequence[bytes]) -> Pixels:
        """N encoded images -> [N, 3, S, S] uint8 (CPU); the error of the first bad image."""
        headers = [read_image_header(blob) for blob in blobs]  # once: sizes here, limits in decode
        pixels = request_pixels(headers)
        if pixels <= INLINE_PIXELS:
            images = self.decode_slice(blobs, headers, range(len(blobs)))
        else:
            loop = asyncio.get_running_loop()
            slices = contiguous_slices(len(blobs), self.jobs(pixels))
            jobs = [
                loop.run_in_executor(self.pool, self.decode_slice, blobs, headers, part) for part in slices
            ]
            results = await asyncio.gather(*jobs, return_exceptions=True)
            for result in results:  # in image order: the first slice with an error has the first
                if isinstance(result, BaseException):
                    raise result
            images = [image for result in results for image in result]  # type: ignore[union-attr]
        if not self.pin_memory:
            return Pixels(torch.stack(images))
        staging = torch.empty((len(images), *images[0].shape), dtype=torch.uint8, pin_memory=True)
        return Pixels(torch.stack(images, out=staging))

    def jobs(self, pixels: float) -> int:
        """Pool jobs for a request of `pixels` (infinite: a header without a size, so Pillow will
        say; one job per thread then, as the size is unknown)."""
        if pixels == math.inf:
            return self.threads
        return max(1, min(self.threads, math.ceil(pixels / PIXELS_PER_JOB)))

    def decode_slice(
        self, blobs: Sequence[bytes], headers: Sequence[ImageHeader], indices: range
    ) -> list[torch.Tensor]:
        return [decode_image(blobs[i], i, self.limits, self.resize, headers[i]) for i in indices]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's cpuset)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def request_pixels(headers: Sequence[ImageHeader]) -> float:
    """The pixels of all the images by their headers; infinite if any header does not say."""
    total = 0
    for header in headers:
        pixels = header.pixels
        if pixels is None:
            return math.inf
        total += pixels
    return total


def contiguous_slices(count: int, parts: int) -> list[range]:
    """0..count-1 cut into at most `parts` contiguous, non-empty ranges of near-equal length."""
    parts = max(1, min(parts, count))
    return [range(i * count // parts, (i + 1) * count // parts) for i in range(parts)]
