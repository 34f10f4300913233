"""CUDA-graph replay of the stock image encoder for a fixed set of batch sizes ("buckets").

Eager ViT-B/32 at batch 1 spends most of its 3-4 ms launching a few hundred kernels from Python; a
captured graph replays them with one launch (0.87 ms; DESIGN.md, performance levers). One graph per
bucket is captured at start-up, each with its own static input and output buffers. A batch of n
is copied into the smallest bucket >= n and replayed, and its n output rows are copied out. The
rows past n keep whatever the last replay left there: images never interact inside the encoder
(attention is within an image, norms are per token or use running statistics), so padding rows
cannot change real rows and need no clearing. Batches above the largest bucket run in chunks of it.

The bucket logic (`chunk_plan`, `BucketedEncoder`) is device-independent and tested on the CPU;
`capture_graphs` needs CUDA.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from models.backbone import Backbone

log = logging.getLogger("clipserve")
WARMUP_PASSES = 3  # eager passes per bucket before capture: lazy init and library autotuning stay out of it


def default_buckets(max_batch: int) -> tuple[int, ...]:
    """1, 2, 4, ... below max_batch, and max_batch itself: padding wastes at most half a pass."""
    buckets = {max_batch}
    size = 1
    while size < max_batch:
        buckets.add(size)
        size *= 2
    return tuple(sorted(buckets))


def chunk_plan(n: int, buckets: Iterable[int]) -> list[tuple[int, int, int]]:
    """(start, rows, bucket) per replay for a batch of n: full chunks of the largest bucket, then
    the rest in the smallest bucket that holds it."""
    ordered = sorted(set(buckets))
    if not ordered or ordered[0] < 1:
        raise ValueError(f"buckets must be positive batch sizes, got {ordered}")
    largest = ordered[-1]
    plan = []
    start = 0
    while n - start > 0:
        rows = min(n - start, largest)
        plan.append((start, rows, next(b for b in ordered if b >= rows)))
        start += rows
    return plan


@dataclass(frozen=True)
class StaticPass:
    """One captured bucket: replay() reads `inputs` and writes `outputs`, both fixed buffers."""

    inputs: torch.Tensor  # [bucket, 3, S, S] in the encoder's input dtype, on the device
    outputs: torch.Tensor  # [bucket, D] normalised float32, on the device
    replay: Callable[[], None]


class BucketedEncoder:
    """An ImageEncoder that runs each batch through the static pass of its bucket."""

    name = "torch+cuda-graphs"

    def __init__(self, passes: dict[int, StaticPass]) -> None:
        self.passes = passes
        self.buckets = tuple(sorted(passes))

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """[N, 3, S, S] normalised float on the device -> [N, D] normalised float32."""
        outputs = []
        for start, rows, bucket in chunk_plan(len(pixels), self.buckets):
            static = self.passes[bucket]
            static.inputs[:rows].copy_(pixels[start : start + rows])  # casts to the encoder's dtype
            static.replay()
            # A copy, not a view: the next replay of this bucket overwrites the static output.
            outputs.append(static.outputs[:rows].clone())  # [rows, D]
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def capture_graphs(
    encode: Callable[[torch.Tensor], torch.Tensor],
    buckets: Iterable[int],
    sample_shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
) -> dict[int, StaticPass]:
    """One CUDA graph of `encode` per bucket (torch.cuda.graphs: warm up on a side stream, then
    capture). The graphs share one memory pool, captured largest first so the smaller ones fit in
    what the larger freed. Sharing is safe here because replays never overlap (one lane thread, one
    stream) and each replay's output is copied out before the next replay."""
    passes: dict[int, StaticPass] = {}
    with torch.cuda.device(device), torch.no_grad():
        pool = torch.cuda.graph_pool_handle()
        side = torch.cuda.Stream(device)
        for bucket in sorted(set(buckets), reverse=True):
            inputs = torch.zeros((bucket, *sample_shape), dtype=dtype, device=device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(WARMUP_PASSES):
                    encode(inputs)
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: a CUDA call another thread makes meanwhile does not invalidate the capture
            with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
                outputs = encode(inputs)  # [bucket, D]
            passes[bucket] = StaticPass(inputs, outputs, graph.replay)
        torch.cuda.synchronize(device)  # start-up only: every graph is ready before the first request
    return passes


def graphed_image_encoder(backbone: Backbone, buckets: Iterable[int]) -> BucketedEncoder:
    size = backbone.preprocessing.image_size
    buckets = tuple(sorted(set(buckets)))
    passes = capture_graphs(
        backbone.encode_images, buckets, (3, size, size), backbone.cast_dtype, backbone.device
    )
    log.info("image encoder captured as CUDA graphs for batch sizes %s", ", ".join(map(str, buckets)))
    return BucketedEncoder(passes)
