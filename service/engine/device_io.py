"""A lane batch's way onto the device and back: the only places the hot path meets the host.

Streams (CUDA): each lane encodes on its own stream, JPEGs decode on the decode stream and are
resized on the prepare stream, labels are encoded on the text stream and class matrices assembled
on the matrix stream. Nothing waits for the default stream per batch: a job carries an event for
each input made on another stream (its decoded pixels, its class matrix), and the lane's stream
waits on those events only, on the device. So a request that encodes 1,000 new labels delays no one
else's images.

In: each job's pixels are either on the device already (GPU decode; the lane's stream waits on the
job's decode event, so the host never waits) or in pinned host memory (Pillow decode), copied
asynchronously. Out: every job's [n, C] cosines go to the host in ONE copy, which is the one host
sync of a batch. On the CPU all of this reduces to a concatenation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

from service.engine.decode import Pixels


@dataclass(frozen=True)
class ClassMatrix:
    """A request's class side on its way to a lane (the class-side twin of Pixels)."""

    data: torch.Tensor  # [C, D] normalised, on the device
    ready: torch.cuda.Event | None = None  # recorded on the matrix stream once `data` is written

    def __len__(self) -> int:
        return len(self.data)

    def to_host(self) -> torch.Tensor:
        """[C, D] float32 on the CPU; the host waits for the rows (the embeddings route, not a lane)."""
        if self.ready is not None:
            self.ready.synchronize()
        return self.data.float().cpu()


def side_stream(device: torch.device) -> torch.cuda.Stream | None:
    """A CUDA stream of its own (a lane's, the text thread's), so its work overlaps the others'."""
    return torch.cuda.Stream(device) if device.type == "cuda" else None


lane_stream = side_stream


def record_ready(stream: torch.cuda.Stream | None) -> torch.cuda.Event | None:
    """An event marking the work queued on `stream` so far (None without CUDA)."""
    if stream is None:
        return None
    event = torch.cuda.Event()
    event.record(stream)
    return event


def wait_for(stream: torch.cuda.Stream | None, events: Iterable[torch.cuda.Event | None]) -> None:
    """`stream` waits, on the device, for each event; the host goes on queueing work."""
    if stream is None:
        return
    for event in events:
        if event is not None:
            stream.wait_event(event)


@contextlib.contextmanager
def on_stream(stream: torch.cuda.Stream | None) -> Iterator[None]:
    if stream is None:
        yield
        return
    with torch.cuda.stream(stream):
        yield


def follow_default_stream(stream: torch.cuda.Stream | None, device: torch.device) -> None:
    """Make a side stream wait (on the device, not the host) for work queued on the default stream.

    Once, when a lane or a text-cache stream is made (weights and learner tensors were written on the
    default stream at load; PyTorch's side streams do not wait for it implicitly), and before a
    warm-up pass; never per batch.
    """
    if stream is not None:
        stream.wait_stream(torch.cuda.default_stream(device))


def hold_for(stream: torch.cuda.Stream | None, tensors: Iterable[torch.Tensor]) -> None:
    """Tensors made on another stream and read on `stream`: tell the caching allocator, so that a
    block freed on the host (a class matrix evicted from the cache mid-pass, a decoded image after
    its resize was queued) is not handed out again until `stream` is past its reads."""
    if stream is None:
        return
    for tensor in tensors:
        if tensor.is_cuda:
            tensor.record_stream(stream)


def gather_pixels(parts: Sequence[Pixels], device: torch.device) -> torch.Tensor:
    """Each job's [n_j, 3, S, S] uint8 -> [N, 3, S, S] uint8 on `device`, ordered on the current stream."""
    on_device = [_to_device(part, device) for part in parts]
    return on_device[0] if len(on_device) == 1 else torch.cat(on_device)


def _to_device(part: Pixels, device: torch.device) -> torch.Tensor:
    data = part.data
    if device.type != "cuda":
        return data.to(device)
    stream = torch.cuda.current_stream(device)
    if part.ready is not None:
        stream.wait_event(part.ready)  # a device-side wait: the host goes on queueing work
    if data.is_cuda:
        # Allocated on the decode stream and read on this one: without this the caching allocator
        # could hand the block to the decode stream's next request while this stream still reads it.
        data.record_stream(stream)
        return data
    if not data.is_pinned():  # only warm-up batches; the Pillow decoder stacks into pinned memory
        data = data.pin_memory()
    return data.to(device, non_blocking=True)


def results_to_host(outputs: list[torch.Tensor | Exception]) -> list[torch.Tensor | Exception]:
    """Per job [n_j, C_j] on the device -> float32 on the CPU, in one copy (the batch's one sync)."""
    tensors = [out for out in outputs if isinstance(out, torch.Tensor)]
    if not tensors:
        return outputs
    flat = torch.cat([out.reshape(-1).float() for out in tensors]).cpu()  # [sum n_j * C_j]
    pieces = iter(flat.split([out.numel() for out in tensors]))
    return [out if isinstance(out, Exception) else next(pieces).view(out.shape) for out in outputs]
