"""A lane batch's way onto the device and back: the only places the hot path meets the host.

In: each job's pixels are either on the device already (GPU decode; the lane's stream waits on the
job's decode event, so the host never waits) or in pinned host memory (Pillow decode), copied
asynchronously. Out: every job's [n, C] cosines go to the host in ONE copy, which is the one host
sync of a batch. On the CPU all of this reduces to a concatenation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from service.engine.decode import Pixels


def lane_stream(device: torch.device) -> torch.cuda.Stream | None:
    """A lane's own CUDA stream, so its encoder pass overlaps decoding on the decode stream."""
    return torch.cuda.Stream(device) if device.type == "cuda" else None


@contextlib.contextmanager
def on_stream(stream: torch.cuda.Stream | None) -> Iterator[None]:
    if stream is None:
        yield
        return
    with torch.cuda.stream(stream):
        yield


def follow_default_stream(stream: torch.cuda.Stream | None, device: torch.device) -> None:
    """Make the lane's stream wait (on the device, not the host) for work queued on the default stream.

    Class matrices come from the text thread and warm-up tensors from start-up, both on the default
    stream; PyTorch's side streams do not wait for it implicitly, so without this a pass could read
    a class matrix that is still being written.
    """
    if stream is not None:
        stream.wait_stream(torch.cuda.default_stream(device))


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
