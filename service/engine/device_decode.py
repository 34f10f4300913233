"""The GPU decode path: a request's JPEGs decoded in one nvJPEG batch, resized on the device.

Per request (decode_device=cuda):
1. headers, on the CPU pool: `read_header` applies the same format and size limits as the Pillow
   path, before any pixel data is decoded. If any image is refused, the whole request goes to the
   Pillow decoder, which raises exactly the error it always has.
2. routing: baseline RGB or greyscale JPEGs that end in an EOI marker go to nvJPEG; everything else
   (PNG, WebP, GIF, BMP, CMYK and progressive JPEGs, JPEGs cut short) is decoded by Pillow on the
   CPU pool. A truncated JPEG must stay a 400, and nvJPEG may decode one without complaint. Of the
   nvJPEG JPEGs, the smallest stay there while their pixels fit `max_gpu_decode_pixels`; the others
   are decoded by Pillow at reduced size (JPEG draft): service/engine/decode_budget.py.
3. on the device thread: torchvision.io.decode_jpeg(list, device=cuda) (one nvJPEG batch) on the
   decode stream, drained first; then on the prepare stream, after the decode: open_clip's resize +
   centre crop as tensor ops (images of one size resized as one batch), the Pillow rows copied up
   from pinned memory, all stacked in request order; then an event is recorded. The lane's stream
   waits on that event, so neither the event loop nor a lane waits for decoding. Why two streams and
   the drain: service/engine/decode_streams.py (torchvision's decoder does not order its writes
   after work queued on the caller's stream). If nvJPEG raises (data it cannot read), the request
   is decoded by Pillow instead, which either succeeds or raises the 400 it always has.

Decoding per request rather than per lane batch keeps a request's errors in its own coroutine,
before it queues, and the nvJPEG batch is the request (32 images in the target workload, the
encoder batch size). Decode and encode overlap across requests: request k+1 decodes on the decode
stream while request k is resized on the prepare stream and batch k-1 encodes on the lane's stream.

The same code runs with device=cpu (torchvision's libjpeg-turbo decoder): that is how the tests
and the CPU bench exercise it without a GPU.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from models.transfer import to_device
from service.engine.decode import DecodeLimits, Decoder, Pixels, decode_image, read_header
from service.engine.decode_budget import decode_drafted, header_pixels, over_budget
from service.engine.decode_streams import DecodeStreams
from service.errors import ServiceError
from service.settings import DEFAULT_GPU_DECODE_PIXELS

log = logging.getLogger("clipserve")
JPEG_EOI = b"\xff\xd9"
TENSOR_MODES = ("RGB", "L")  # JPEG colour modes the tensor decoder turns into RGB exactly like Pillow
# Routes: the tensor decoder (nvJPEG), Pillow, or Pillow at reduced size (over the pixel budget)
DEVICE, PILLOW, DRAFT = "device", "pillow", "draft"


def ends_complete(data: bytes) -> bool:
    """A JPEG whose last marker is EOI (trailing NUL padding allowed): not cut short."""
    return data.rstrip(b"\x00").endswith(JPEG_EOI)


def tensor_decodable(image: Image.Image, data: bytes) -> bool:
    """Whether nvJPEG (or libjpeg-turbo via torchvision) should decode this image."""
    progressive = bool(image.info.get("progressive") or image.info.get("progression"))
    return image.format == "JPEG" and image.mode in TENSOR_MODES and not progressive and ends_complete(data)


def plan_routes(
    blobs: Sequence[bytes], limits: DecodeLimits, max_pixels: int = DEFAULT_GPU_DECODE_PIXELS
) -> list[str] | None:
    """Per image DEVICE, PILLOW or DRAFT (a DEVICE image over the request's pixel budget); None
    when any header is refused."""
    routes, pixels = [], []
    for index, data in enumerate(blobs):
        try:
            image = read_header(data, index, limits)
        except ServiceError:
            return None
        routes.append(DEVICE if tensor_decodable(image, data) else PILLOW)
        pixels.append(header_pixels(image))
    on_device = [i for i, route in enumerate(routes) if route == DEVICE]
    for refused in over_budget([pixels[i] for i in on_device], max_pixels):
        routes[on_device[refused]] = DRAFT
    return routes


def decode_jpegs(blobs: Sequence[bytes], device: torch.device) -> list[torch.Tensor]:
    """JPEG bytes -> per image [3, H, W] uint8 on `device`; on CUDA one nvJPEG batch."""
    # bytearray: torch.frombuffer wants a writable buffer; the copy is small next to the pixels
    encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in blobs]
    return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)


def probe_jpeg() -> bytes:
    """A small baseline JPEG (a grey ramp), made in memory for the start-up probe."""
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((64, 48)).convert("RGB").save(buffer, format="JPEG")
    return buffer.getvalue()


def tensor_decode_problem(device: torch.device) -> str | None:
    """Decode the probe JPEG on `device` (start-up: also creates nvJPEG's handle and buffers);
    None if that works, else why not (e.g. a torchvision built without nvJPEG)."""
    try:
        with torch.no_grad():
            (image,) = decode_jpegs([probe_jpeg()], device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
    except RuntimeError as error:
        return str(error)
    return None if image.shape == (3, 48, 64) else f"the probe JPEG decoded to shape {tuple(image.shape)}"


def resize_tensors(images: Sequence[torch.Tensor], resize: Callable) -> list[torch.Tensor]:
    """Per image [3, H, W] uint8 -> [3, S, S] uint8 through open_clip's eval resize + crop, applied
    as tensor ops (bicubic with antialiasing); images of the same size go through as one batch."""
    by_size: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, image in enumerate(images):
        by_size[tuple(image.shape)].append(i)
    resized: list[torch.Tensor | None] = [None] * len(images)
    for members in by_size.values():
        batch = resize(torch.stack([images[i] for i in members]))  # [g, 3, H, W] -> [g, 3, S, S]
        for i, row in zip(members, batch.unbind(), strict=True):
            resized[i] = row
    return resized  # type: ignore[return-value]


class DeviceDecoder:
    """Decodes a request's JPEGs as tensors on `device` (nvJPEG on CUDA); Pillow for the rest."""

    def __init__(
        self, pillow: Decoder, device: torch.device, max_pixels: int = DEFAULT_GPU_DECODE_PIXELS
    ) -> None:
        self.pillow, self.device, self.limits, self.max_pixels = pillow, device, pillow.limits, max_pixels
        self.resize = pillow.resize  # the same open_clip transform; torchvision's ops take tensors too
        self.size = self.resize(Image.new("RGB", (64, 64))).size[0]  # S, the model's input side
        # One thread: torchvision serialises nvJPEG behind a global lock anyway, and one thread keeps
        # the decode stream's work in request order.
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="decode-device")
        self.streams = DecodeStreams(device)

    async def decode(self, blobs: Sequence[bytes]) -> Pixels:
        """N encoded images -> [N, 3, S, S] uint8 on the device (Pixels.ready: the decode event)."""
        loop = asyncio.get_running_loop()
        routes = await loop.run_in_executor(
            self.pillow.pool, plan_routes, blobs, self.limits, self.max_pixels
        )
        if routes is None or all(route == PILLOW for route in routes):  # refused, or no JPEG for nvJPEG
            return await self.pillow.decode(blobs)
        on_host = [self._on_host(loop, routes[i], blob, i) for i, blob in enumerate(blobs)]
        decoded = await asyncio.gather(*(job for job in on_host if job is not None), return_exceptions=True)
        host_rows = [row for row in decoded if isinstance(row, torch.Tensor)]
        if len(host_rows) < len(decoded):
            return await self.pillow.decode(blobs)  # raises the error the Pillow path always has
        try:
            decode = self._decode_on_device
            return await loop.run_in_executor(self.thread, decode, blobs, routes, host_rows)
        except RuntimeError as error:  # nvJPEG refused some data: Pillow decides (image or 400)
            log.info("tensor JPEG decode failed (%s); decoding the request with Pillow", error)
            return await self.pillow.decode(blobs)

    def _on_host(
        self, loop: asyncio.AbstractEventLoop, route: str, blob: bytes, i: int
    ) -> asyncio.Future[torch.Tensor] | None:
        """An image's CPU-pool decode: Pillow in full, or at reduced size (DRAFT); None: nvJPEG's."""
        if route == PILLOW:
            return loop.run_in_executor(self.pillow.pool, decode_image, blob, i, self.limits, self.resize)
        if route == DRAFT:
            pool, limits = self.pillow.pool, self.limits
            return loop.run_in_executor(pool, decode_drafted, blob, i, limits, self.resize, self.size)
        return None

    def _decode_on_device(
        self, blobs: Sequence[bytes], routes: list[str], host_rows: list[torch.Tensor]
    ) -> Pixels:
        jpeg_index = [i for i, route in enumerate(routes) if route == DEVICE]
        with torch.no_grad():
            with self.streams.decoding():
                decoded = decode_jpegs([blobs[i] for i in jpeg_index], self.device) if jpeg_index else []
            with self.streams.preparing(decoded):  # decoded: [3, H_i, W_i] each
                rows = dict(zip(jpeg_index, resize_tensors(decoded, self.resize), strict=True))
                if host_rows:
                    uploaded = self._upload(host_rows)  # [h, 3, S, S]
                    host_index = [i for i, route in enumerate(routes) if route != DEVICE]
                    rows.update(zip(host_index, uploaded.unbind(), strict=True))
                data = torch.stack([rows[i] for i in range(len(blobs))])  # [N, 3, S, S] uint8
                return Pixels(data, self.streams.ready())

    def _upload(self, host_rows: list[torch.Tensor]) -> torch.Tensor:
        """[3, S, S] uint8 rows on the host -> [h, 3, S, S] on the device, via pinned memory."""
        return to_device(torch.stack(host_rows), self.device)

    def close(self) -> None:
        self.thread.shutdown(wait=False, cancel_futures=True)
        self.pillow.close()
