"""Image bytes -> resized uint8 pixels (Pillow, CPU threads); normalisation happens on the device.

Resizing matches open_clip's eval transform for the backbone (resize + centre crop), so the
service sees the same pixels as training and offline evaluation. Limits are checked before any
pixel data is decoded: a 100,000 x 100,000 PNG is refused from its header (decompression bomb).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from open_clip.transform import image_transform
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import Compose
from torchvision.transforms.functional import pil_to_tensor

from models.backbone import Preprocessing
from service.errors import CorruptImage, TooLarge, UnsupportedMedia


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int
    formats: tuple[str, ...]


def resize_transform(preprocessing: Preprocessing) -> Callable[[Image.Image], Image.Image]:
    """open_clip's eval transform up to (not including) ToTensor + Normalize."""
    full = image_transform(
        preprocessing.image_size,
        is_train=False,
        mean=preprocessing.mean,
        std=preprocessing.std,
        resize_mode=preprocessing.resize_mode,
        interpolation=preprocessing.interpolation,
    )
    return Compose(full.transforms[:-2])


def decode_image(data: bytes, index: int, limits: DecodeLimits, resize: Callable) -> torch.Tensor:
    """One encoded image -> [3, S, S] uint8; raises 415/413/400 errors naming image `index`."""
    try:
        image = Image.open(io.BytesIO(data))
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
    if image.format not in limits.formats:
        raise UnsupportedMedia(
            f"image {index}: format {image.format} is not accepted (image_formats={','.join(limits.formats)})"
        )
    width, height = image.size
    if width * height > limits.max_pixels:
        raise TooLarge(
            f"image {index}: {width}x{height} = {width * height} pixels exceeds "
            f"max_image_pixels={limits.max_pixels}"
        )
    try:
        rgb = image.convert("RGB")  # decodes the pixel data
    except Exception as error:  # truncated or corrupt data: OSError, SyntaxError, ValueError ...
        raise CorruptImage(f"image {index}: corrupt or truncated {image.format} data ({error})") from error
    return pil_to_tensor(resize(rgb))  # [3, S, S] uint8


class Decoder:
    """Decodes the images of one request in parallel on a small thread pool."""

    def __init__(self, preprocessing: Preprocessing, limits: DecodeLimits, threads: int) -> None:
        self.limits = limits
        self.resize = resize_transform(preprocessing)
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="decode")

    async def decode(self, blobs: Sequence[bytes]) -> torch.Tensor:
        """N encoded images -> [N, 3, S, S] uint8 (CPU)."""
        loop = asyncio.get_running_loop()
        jobs = [
            loop.run_in_executor(self.pool, decode_image, blob, i, self.limits, self.resize)
            for i, blob in enumerate(blobs)
        ]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return torch.stack(results)  # type: ignore[arg-type]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def normalise(pixels: torch.Tensor, preprocessing: Preprocessing, device: torch.device) -> torch.Tensor:
    """[B, 3, S, S] uint8 on CPU -> [B, 3, S, S] float32 normalised, on `device` (one copy)."""
    x = pixels.to(device, non_blocking=True).float().div_(255)
    mean = torch.tensor(preprocessing.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std, device=device).view(1, 3, 1, 1)
    return (x - mean) / std
