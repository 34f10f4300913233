"""Host-to-device copies that do not make the host wait for the GPU.

`tensor.to("cuda")` from ordinary (pageable) host memory is a synchronous copy: the host waits until
every kernel already queued on the current stream has run and the copy is done. On a hot path that
turns queued GPU work into host latency (torch docs, "CUDA semantics: use pinned memory buffers").
From page-locked memory the copy is queued like a kernel and the host goes on; the caching host
allocator keeps the pinned buffer alive until the copy has run.
"""

from __future__ import annotations

import torch


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """`tensor` on `device`; to CUDA through pinned memory with a non-blocking copy (ordered on the
    current stream, so kernels queued after it on that stream see the data)."""
    device = torch.device(device)
    if device.type != "cuda" or tensor.is_cuda:
        return tensor.to(device)
    if not tensor.is_pinned():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)
