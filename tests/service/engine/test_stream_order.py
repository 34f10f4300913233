"""Stream ordering of the class side (service/engine/device_io.py, service/catalog/text_cache.py):
labels are encoded on the text stream, matrices stacked on the matrix stream after the events of
their rows' encodings, each class matrix carries the event recorded after its stack, and a lane's
stream waits on its jobs' events only, never on the default stream per batch. CPU tests check the calls
with fake streams and events; the `gpu` test checks that a busy text stream and a busy default
stream hold up no lane batch."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import service.catalog.text_cache as text_cache_module
import service.catalog.versions as versions_module
import service.engine.batcher as batcher_module
from models.backbone import Preprocessing
from service.catalog.text_cache import TextCache
from service.catalog.versions import Version
from service.engine.batcher import BatchConfig, Lane, stock_forward
from service.engine.decode import Pixels
from service.engine.device_io import ClassMatrix, hold_for
from service.metrics import Metrics

PRE = Preprocessing(4, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
D = 8


class FakeStream:
    def __init__(self, name: str) -> None:
        self.name, self.calls = name, []  # type: ignore[var-annotated]

    def wait_event(self, event: object) -> None:
        self.calls.append(("wait_event", event))

    def wait_stream(self, stream: object) -> None:
        self.calls.append(("wait_stream", stream))


class Recorder:
    """Fake on_stream / record_ready: which stream is current on each thread, events in order."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.events: list[tuple[str, str | None]] = []  # (stream recorded on, stream current then)

    def current(self) -> str | None:
        return getattr(self.local, "stream", None)

    @contextmanager
    def on_stream(self, stream: FakeStream | None) -> Iterator[None]:
        previous = self.current()
        self.local.stream = stream.name if stream is not None else None
        try:
            yield
        finally:
            self.local.stream = previous

    def record_ready(self, stream: FakeStream | None) -> tuple[str, str | None]:
        assert stream is not None
        event = (stream.name, self.current())
        self.events.append(event)
        return event


def identity_encoder(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.flatten(1)[:, :D].float(), dim=-1)  # [N, D]


def test_a_lane_waits_on_its_jobs_class_matrix_events_only(monkeypatch: pytest.MonkeyPatch) -> None:
    followed: list[object] = []
    monkeypatch.setattr(
        batcher_module, "follow_default_stream", lambda stream, device: followed.append(stream)
    )
    monkeypatch.setattr(batcher_module, "on_stream", Recorder().on_stream)

    async def scenario() -> tuple[FakeStream, list[torch.Tensor]]:
        config = BatchConfig(max_batch=8, max_wait_s=0.05, max_queue=64)
        lane = Lane("shared", stock_forward(identity_encoder), config, Metrics(), PRE, torch.device("cpu"))
        stream = lane.stream = FakeStream("lane")  # type: ignore[assignment]
        followed.clear()  # the lane's own construction (once) is not what is checked here
        pixels = Pixels(torch.randint(0, 255, (2, 3, 4, 4), dtype=torch.uint8))
        first = ClassMatrix(F.normalize(torch.randn(3, D), dim=-1), ready="classes-1")  # type: ignore[arg-type]
        second = ClassMatrix(F.normalize(torch.randn(5, D), dim=-1), ready="classes-2")  # type: ignore[arg-type]
        try:
            results = await asyncio.gather(lane.submit(pixels, first), lane.submit(pixels, second))
        finally:
            await lane.close()
        return stream, results

    stream, (one, two) = asyncio.run(scenario())
    assert one.shape == (2, 3) and two.shape == (2, 5)  # one pass, each job scored with its own matrix
    assert stream.calls == [("wait_event", "classes-1"), ("wait_event", "classes-2")]
    assert followed == []  # no wait for the whole default stream per batch


def test_a_warm_up_pass_follows_the_default_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """Warm-up tensors are made on the default stream at start-up: that pass alone waits for it."""
    followed: list[object] = []
    monkeypatch.setattr(
        batcher_module, "follow_default_stream", lambda stream, device: followed.append(stream)
    )

    async def scenario() -> None:
        config = BatchConfig(max_batch=8, max_wait_s=0.05, max_queue=64)
        lane = Lane("shared", stock_forward(identity_encoder), config, Metrics(), PRE, torch.device("cpu"))
        followed.clear()
        await lane.warm(Pixels(torch.zeros(1, 3, 4, 4, dtype=torch.uint8)), torch.zeros(1, D))
        await lane.close()

    asyncio.run(scenario())
    assert followed == [None]  # once, for the warm-up pass (the stream is None on the CPU)


class FakeVersion:
    """What TextCache needs of a version; records which stream its text side ran on."""

    uid, freed = "v1", False

    def __init__(self, recorder: Recorder, stored: dict[str, int] | None = None) -> None:
        self.recorder, self.stored = recorder, stored or {}
        self.ran_on: list[str | None] = []
        self.embeddings = F.normalize(torch.randn(max(len(self.stored), 1), D), dim=-1)

    def precomputed_covers(self, labels: list[str], templates: object) -> bool:
        return all(label in self.stored for label in labels)

    def precomputed_rows(self, labels: list[str]) -> torch.Tensor:
        self.ran_on.append(self.recorder.current())
        return self.embeddings[[self.stored[label] for label in labels]]

    def stored_row(self, label: str, templates: object) -> torch.Tensor | None:
        return self.embeddings[self.stored[label]] if label in self.stored else None

    def encode_labels(self, labels: list[str], templates: tuple[str, ...]) -> torch.Tensor:
        self.ran_on.append(self.recorder.current())
        return F.normalize(torch.randn(len(labels), D), dim=-1)


def text_cache_on_fake_streams(monkeypatch: pytest.MonkeyPatch) -> tuple[TextCache, Recorder, list]:
    recorder, waits = Recorder(), []
    monkeypatch.setattr(text_cache_module, "on_stream", recorder.on_stream)
    monkeypatch.setattr(text_cache_module, "record_ready", recorder.record_ready)
    wait = lambda stream, events: waits.extend((stream.name, event) for event in events)  # noqa: E731
    monkeypatch.setattr(text_cache_module, "wait_for", wait)
    cache = TextCache(capacity=100, metrics=Metrics())
    cache.text_stream = FakeStream("text")  # type: ignore[assignment]
    cache.matrix_stream = FakeStream("matrix")  # type: ignore[assignment]
    return cache, recorder, waits


def test_labels_are_encoded_on_the_text_stream_and_stacked_after_their_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache, recorder, waits = text_cache_on_fake_streams(monkeypatch)
    version = FakeVersion(recorder, stored={"cat": 0})

    async def scenario() -> tuple[ClassMatrix, ClassMatrix, ClassMatrix]:
        first = await cache.class_matrix(version, ["zebra", "cat", "lion"], ())  # type: ignore[arg-type]
        again = await cache.class_matrix(version, ["zebra", "cat", "lion"], ())  # type: ignore[arg-type]
        cached_rows = await cache.class_matrix(version, ["lion", "zebra"], ())  # type: ignore[arg-type]
        return first, again, cached_rows

    try:
        first, again, cached_rows = asyncio.run(scenario())
    finally:
        cache.close()
    encoded = ("text", "text")  # the encoding's event: recorded on the text stream, by the text thread
    assert version.ran_on == ["text"]  # one encoding (zebra, lion), on the text stream
    assert recorder.events == [encoded, ("matrix", "matrix"), ("matrix", "matrix")]
    # the first stack waits for the encoding (once for both rows; the stored row has no event) ...
    assert first.ready == ("matrix", "matrix") and first.data.shape == (3, D)
    assert again is first  # the whole-list cache: same matrix, same event, no new stack
    # ... and a stack of cached rows waits on their (long finished) event, not on the text stream
    assert waits == [("matrix", encoded), ("matrix", encoded)]
    assert torch.equal(cached_rows.data, first.data[[2, 0]])


def test_stored_rows_are_selected_on_the_matrix_stream_with_an_event(monkeypatch: pytest.MonkeyPatch) -> None:
    cache, recorder, waits = text_cache_on_fake_streams(monkeypatch)
    version = FakeVersion(recorder, stored={"cat": 0, "dog": 1})
    try:
        matrix = asyncio.run(cache.class_matrix(version, ["dog", "cat"], ()))  # type: ignore[arg-type]
    finally:
        cache.close()
    assert version.ran_on == ["matrix"] and matrix.ready == ("matrix", "matrix") and waits == []
    assert torch.equal(matrix.data, version.embeddings[[1, 0]])


def test_stored_rows_index_goes_up_without_a_blocking_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """`torch.tensor(rows, device=cuda)` on the event loop was a pageable, blocking copy."""
    moved: list[list[int]] = []

    def spy(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
        moved.append(tensor.tolist())
        return tensor.to(device)

    monkeypatch.setattr(versions_module, "to_device", spy)
    embeddings = F.normalize(torch.randn(3, D), dim=-1)
    version = Version("pets", 1, "coop", "", "", None, None, ["cat", "dog", "owl"], embeddings, 100.0)  # type: ignore[arg-type]
    assert torch.equal(version.precomputed_rows(["owl", "cat"]), embeddings[[2, 0]])
    assert version.precomputed_rows(["cat", "dog", "owl"]) is embeddings  # all of them: no copy at all
    assert moved == [[2, 0]]


class FakeMatrix:
    def __init__(self, is_cuda: bool) -> None:
        self.is_cuda, self.recorded = is_cuda, []  # type: ignore[var-annotated]

    def record_stream(self, stream: Any) -> None:
        self.recorded.append(stream)


def test_class_matrices_on_the_device_are_held_for_the_lanes_stream() -> None:
    on_device, on_host, stream = FakeMatrix(True), FakeMatrix(False), FakeStream("lane")
    hold_for(stream, [on_device, on_host])  # type: ignore[list-item]
    hold_for(None, [on_device])  # type: ignore[list-item]
    assert on_device.recorded == [stream] and on_host.recorded == []


class CudaVersion:
    """A version with two stored classes on the GPU and a fast text side (random rows)."""

    uid, freed = "v1", False

    def __init__(self) -> None:
        self.stored = {"cat": 0, "dog": 1}
        self.class_embeddings = F.normalize(torch.randn(2, D, device="cuda"), dim=-1)

    def precomputed_covers(self, labels: list[str], templates: object) -> bool:
        return all(label in self.stored for label in labels)

    def precomputed_rows(self, labels: list[str]) -> torch.Tensor:
        return self.class_embeddings[[self.stored[label] for label in labels]]

    def stored_row(self, label: str, templates: object) -> torch.Tensor | None:
        return self.class_embeddings[self.stored[label]] if label in self.stored else None

    def encode_labels(self, labels: list[str], templates: tuple[str, ...]) -> torch.Tensor:
        return F.normalize(torch.randn(len(labels), D, device="cuda"), dim=-1)


@pytest.mark.gpu
def test_a_busy_text_stream_and_default_stream_hold_up_no_lane_batch() -> None:
    """~1.5 s of GPU sleep queued on the text stream (1,000 new labels being encoded) and on the
    default stream: requests whose labels are stored, or cached and stacked anew, get their class
    matrix and their lane batch back while both streams are still busy."""
    cuda = torch.device("cuda")

    async def scenario() -> tuple[list[torch.Tensor], bool, bool, float]:
        config = BatchConfig(max_batch=8, max_wait_s=0.001, max_queue=64)
        lane = Lane("shared", stock_forward(identity_encoder), config, Metrics(), PRE, cuda)
        cache, version = TextCache(100, Metrics(), cuda), CudaVersion()
        pixels = Pixels(torch.randint(0, 255, (2, 3, 4, 4), dtype=torch.uint8).pin_memory())
        warm = await cache.class_matrix(version, ["zebra", "lion", "cat"], ())  # type: ignore[arg-type]
        await lane.submit(pixels, warm)  # lazy set-up, and zebra + lion encoded and cached
        torch.cuda.synchronize()
        assert cache.text_stream is not None
        with torch.cuda.stream(cache.text_stream):
            torch.cuda._sleep(int(3e9))
        torch.cuda._sleep(int(3e9))  # the default stream
        started = time.monotonic()
        stored = await cache.class_matrix(version, ["dog", "cat"], ())  # type: ignore[arg-type]
        restacked = await cache.class_matrix(version, ["lion", "dog", "zebra"], ())  # type: ignore[arg-type]
        cosines = await asyncio.gather(lane.submit(pixels, stored), lane.submit(pixels, restacked))
        elapsed = time.monotonic() - started
        busy = not cache.text_stream.query(), not torch.cuda.default_stream(cuda).query()
        await lane.close()
        cache.close()
        torch.cuda.synchronize()
        return list(cosines), busy[0], busy[1], elapsed

    cosines, text_busy, default_busy, elapsed = asyncio.run(scenario())
    assert [tuple(c.shape) for c in cosines] == [(2, 2), (2, 3)]
    assert text_busy and default_busy, "the sleeps were too short to show anything"
    assert elapsed < 0.5


@pytest.mark.gpu
def test_stored_rows_of_a_version_are_selected_without_waiting_for_the_gpu() -> None:
    """The event loop's class-matrix work for a checkpoint's own classes, under
    set_sync_debug_mode("error"): the row index used to be built with torch.tensor(..., device=cuda),
    a copy from pageable memory that waited for the GPU."""
    embeddings = F.normalize(torch.randn(3, D, device="cuda"), dim=-1)
    version = Version("pets", 1, "coop", "", "", None, None, ["cat", "dog", "owl"], embeddings, 100.0)  # type: ignore[arg-type]
    cache = TextCache(100, Metrics(), torch.device("cuda"))
    torch.cuda.synchronize()

    async def scenario() -> ClassMatrix:
        torch.cuda.set_sync_debug_mode("error")
        try:
            return await cache.class_matrix(version, ["owl", "cat"], ())
        finally:
            torch.cuda.set_sync_debug_mode(0)

    try:
        matrix = asyncio.run(scenario())
    finally:
        cache.close()
    assert matrix.ready is not None and torch.equal(matrix.to_host(), embeddings[[2, 0]].cpu())
