"""The GPU decode path's stream ordering (service/engine/decode_streams.py), checked on the CPU with
fake streams: the decode stream is drained before torchvision allocates and nvJPEG writes, the
resize runs on the prepare stream after the decode with the decoded images held for it, and the
request's event is recorded last. The `gpu` tests run the real thing: the upstream reproduction of
the allocator hazard, and many concurrent decodes next to a busy lane against a serial decode."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F

import service.engine.decode_streams as streams_module
import service.engine.device_decode as device_decode_module
from bench.images import encode, photo, photo_jpeg
from models.backbone import Preprocessing, build_backbone
from service.engine.batcher import BatchConfig, Lane, stock_forward
from service.engine.cuda_graphs import graphed_image_encoder
from service.engine.decode import DecodeLimits, Decoder, Pixels
from service.engine.decode_streams import DecodeStreams
from service.engine.device_decode import DeviceDecoder
from service.engine.device_io import ClassMatrix
from service.metrics import Metrics
from tests.conftest import TINY_ARCH, TINY_SEED

LIMITS = DecodeLimits(max_pixels=10_000_000, formats=("JPEG", "PNG"))
PRE = Preprocessing(32, (0.48, 0.46, 0.41), (0.27, 0.26, 0.28))
CPU = torch.device("cpu")


class Log:
    """Fake streams and stream context: every ordering call, and the stream current at each step."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.local = threading.local()

    def current(self) -> str:
        return getattr(self.local, "stream", "default")

    @contextmanager
    def on_stream(self, stream: FakeStream | None) -> Iterator[None]:
        previous = self.current()
        self.local.stream = stream.name if stream is not None else "default"
        try:
            yield
        finally:
            self.local.stream = previous


class FakeStream:
    def __init__(self, name: str, log: Log) -> None:
        self.name, self.log = name, log

    def synchronize(self) -> None:
        self.log.calls.append(("synchronize", self.name))

    def wait_stream(self, other: FakeStream) -> None:
        self.log.calls.append(("wait_stream", self.name, other.name))


def test_decode_then_prepare_then_event_in_that_order(monkeypatch: pytest.MonkeyPatch) -> None:
    log = Log()
    monkeypatch.setattr(streams_module, "on_stream", log.on_stream)
    monkeypatch.setattr(
        streams_module,
        "hold_for",
        lambda stream, tensors: log.calls.append(("hold", stream.name, str(len(tensors)))),
    )
    monkeypatch.setattr(
        streams_module, "record_ready", lambda stream: log.calls.append(("record", stream.name))
    )
    real_decode, real_resize = device_decode_module.decode_jpegs, device_decode_module.resize_tensors

    def decode(blobs: Sequence[bytes], device: torch.device) -> list[torch.Tensor]:
        log.calls.append(("decode", log.current()))
        return real_decode(blobs, device)

    def resize(images: Sequence[torch.Tensor], transform: object) -> list[torch.Tensor]:
        log.calls.append(("resize", log.current()))
        return real_resize(images, transform)

    monkeypatch.setattr(device_decode_module, "decode_jpegs", decode)
    monkeypatch.setattr(device_decode_module, "resize_tensors", resize)
    decoder = DeviceDecoder(Decoder(PRE, LIMITS, 2), CPU)
    streams = decoder.streams
    streams.decode, streams.prepare = FakeStream("decode", log), FakeStream("prepare", log)  # type: ignore[assignment]
    try:
        blobs = [photo_jpeg(64, 48, 1), encode(photo(40, 30, 2), "PNG"), photo_jpeg(90, 60, 3)]
        pixels = asyncio.run(decoder.decode(blobs))
    finally:
        decoder.close()
    assert pixels.data.shape == (3, 3, 32, 32)
    assert log.calls == [
        ("synchronize", "decode"),  # drained before torchvision allocates the outputs
        ("decode", "decode"),
        ("wait_stream", "prepare", "decode"),  # the resize waits for the decode, on the device
        ("hold", "prepare", "2"),  # the two decoded JPEGs are read on the prepare stream
        ("resize", "prepare"),
        ("record", "prepare"),  # the request's event, after the stack
    ]


def test_without_cuda_the_streams_are_no_ops() -> None:
    streams = DecodeStreams(CPU)
    assert streams.decode is None and streams.prepare is None and streams.ready() is None
    with streams.decoding(), streams.preparing([torch.zeros(1)]):
        pass


def jpeg_requests(count: int) -> list[list[bytes]]:
    """`count` requests of 1-4 JPEGs, every image different (size and content)."""
    sizes = [(640, 480), (480, 640), (1280, 720), (320, 240), (800, 600), (300, 500)]
    requests, seed = [], 0
    for r in range(count):
        request = []
        for _ in range(1 + r % 4):
            w, h = sizes[seed % len(sizes)]
            request.append(photo_jpeg(w, h, seed))
            seed += 1
        requests.append(request)
    return requests


@pytest.mark.gpu
def test_decoded_blocks_never_overwrite_memory_still_being_read() -> None:
    """The upstream reproduction: tensors freed on the decode stream while reductions of them are
    still queued behind a long kernel, then a decode; the decoder is handed those blocks, and
    without the drain nvJPEG overwrote them before the reductions ran (134 of 200 iterations)."""
    cuda = torch.device("cuda")
    decoder = DeviceDecoder(Decoder(PRE, LIMITS, 2, pin_memory=True), cuda)
    blob = photo_jpeg(640, 480, 7)
    nbytes, corrupted = 3 * 640 * 480, 0
    assert decoder.streams.decode is not None
    try:
        for _ in range(20):
            with torch.cuda.stream(decoder.streams.decode):
                tensors = [torch.full((nbytes,), 3, dtype=torch.uint8, device=cuda) for _ in range(4)]
                torch.cuda.synchronize()
                torch.cuda._sleep(int(2e8))  # ~0.1 s of queued work
                sums = [tensor.sum() for tensor in tensors]  # queued behind it
                del tensors  # freed on the host while the reductions still wait
            asyncio.run(decoder.decode([blob]))
            torch.cuda.synchronize()
            corrupted += sum(int(total) != 3 * nbytes for total in sums)
    finally:
        decoder.close()
    assert corrupted == 0


@pytest.mark.gpu
def test_concurrent_decodes_next_to_a_running_lane_equal_a_serial_decode() -> None:
    """48 requests (120 different JPEGs) decoded concurrently, each sent through a CUDA-graph lane
    as soon as it is decoded while other jobs keep the lane busy, with the prepare stream held up
    at the start so that frees and reuses overlap; every request's pixels and cosines must equal a
    one-at-a-time decode's."""
    cuda = torch.device("cuda")
    backbone = build_backbone(TINY_ARCH, None, precision="bf16", device=cuda, seed=TINY_SEED)
    pre = backbone.preprocessing
    requests = jpeg_requests(48)
    classes = F.normalize(torch.randn(5, backbone.embed_dim, device=cuda), dim=-1)

    async def serial(decoder: DeviceDecoder, lane: Lane) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for request in requests:
            pixels = await decoder.decode(request)
            torch.cuda.synchronize()
            out.append((pixels.data.cpu(), await lane.submit(pixels, ClassMatrix(classes))))
        return out

    async def concurrent(decoder: DeviceDecoder, lane: Lane) -> list[tuple[torch.Tensor, torch.Tensor]]:
        stop = asyncio.Event()

        async def churn() -> None:  # other traffic on the lane meanwhile
            noise = Pixels(
                torch.randint(0, 255, (8, 3, pre.image_size, pre.image_size), dtype=torch.uint8).pin_memory()
            )
            while not stop.is_set():
                await lane.submit(noise, ClassMatrix(classes))

        async def one(request: list[bytes]) -> tuple[Pixels, torch.Tensor]:
            pixels = await decoder.decode(request)
            return pixels, await lane.submit(pixels, ClassMatrix(classes))

        background = asyncio.create_task(churn())
        assert decoder.streams.prepare is not None
        with torch.cuda.stream(decoder.streams.prepare):
            torch.cuda._sleep(int(2e8))  # the first resizes run late: decodes must not reuse their inputs
        results = await asyncio.gather(*(one(request) for request in requests))
        stop.set()
        await background
        torch.cuda.synchronize()
        return [(pixels.data.cpu(), cosines) for pixels, cosines in results]

    async def run() -> tuple[list, list]:
        encoder = graphed_image_encoder(backbone, [1, 2, 4, 8, 16])
        config = BatchConfig(max_batch=16, max_wait_s=0.002, max_queue=10_000)
        lane = Lane("shared", stock_forward(encoder), config, Metrics(), pre, cuda)
        decoder = DeviceDecoder(Decoder(pre, LIMITS, 4, pin_memory=True), cuda)
        try:
            return await serial(decoder, lane), await concurrent(decoder, lane)
        finally:
            decoder.close()
            await lane.close()

    expected, got = asyncio.run(run())
    for i, ((pixels, cosines), (want_pixels, want_cosines)) in enumerate(zip(got, expected, strict=True)):
        # nvJPEG and the resize are deterministic; 1 level of slack for float rounding in the resize
        assert (pixels.int() - want_pixels.int()).abs().max() <= 1, f"request {i}: pixels differ"
        assert (cosines - want_cosines).abs().max() < 2e-2, f"request {i}: cosines differ"
