"""A lane batch onto the device and back: jobs' pixels concatenated in order, and every job's result
copied to the host in one copy, with per-job errors left in their places."""

from __future__ import annotations

import asyncio

import pytest
import torch

from bench.images import encode, photo, photo_jpeg
from models.backbone import build_backbone
from service.engine.cuda_graphs import graphed_image_encoder
from service.engine.decode import DecodeLimits, Decoder, Normalise, Pixels
from service.engine.device_decode import DeviceDecoder
from service.engine.device_io import (
    gather_pixels,
    hold_for,
    lane_stream,
    on_stream,
    record_ready,
    results_to_host,
    side_stream,
    wait_for,
)
from service.errors import Invalid


def test_gather_pixels_concatenates_jobs_in_order() -> None:
    parts = [Pixels(torch.full((n, 3, 2, 2), n, dtype=torch.uint8)) for n in (2, 1, 3)]
    pixels = gather_pixels(parts, torch.device("cpu"))
    assert pixels.shape == (6, 3, 2, 2)
    assert pixels[:, 0, 0, 0].tolist() == [2, 2, 1, 3, 3, 3]


def test_results_to_host_keeps_shapes_values_and_errors_per_job() -> None:
    error = Invalid("labels too long")
    outputs: list[torch.Tensor | Exception] = [
        torch.arange(6, dtype=torch.bfloat16).view(2, 3),
        error,
        torch.tensor([[7.5]]),
        torch.zeros(3, 0),
    ]
    host = results_to_host(outputs)
    assert host[1] is error
    first, third, empty = host[0], host[2], host[3]
    assert (
        isinstance(first, torch.Tensor)
        and isinstance(third, torch.Tensor)
        and isinstance(empty, torch.Tensor)
    )
    assert first.dtype == torch.float32 and first.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert third.tolist() == [[7.5]] and empty.shape == (3, 0)


def test_results_to_host_passes_a_batch_of_errors_through() -> None:
    errors: list[torch.Tensor | Exception] = [Invalid("a"), Invalid("b")]
    assert results_to_host(errors) == errors


@pytest.mark.gpu
def test_nothing_between_decode_and_the_results_copy_waits_for_the_gpu() -> None:
    """gather (device rows + pinned host rows), normalise, graph replay and scoring under
    torch.cuda.set_sync_debug_mode("error"): any host sync there raises. The copy out is the one sync."""
    cuda = torch.device("cuda")
    backbone = build_backbone("clipserve-tiny-vit", None, precision="bf16", device=cuda, seed=0)
    pre = backbone.preprocessing
    limits = DecodeLimits(10_000_000, ("JPEG", "PNG"))
    on_device = asyncio.run(
        DeviceDecoder(Decoder(pre, limits, 2, pin_memory=True), cuda).decode([photo_jpeg(640, 480)])
    )
    on_host = asyncio.run(Decoder(pre, limits, 2, pin_memory=True).decode([encode(photo(64, 48), "PNG")]))
    assert on_device.data.is_cuda and on_host.data.is_pinned()
    encoder, normalise = graphed_image_encoder(backbone, [1, 2, 4]), Normalise(pre, cuda)
    classes = torch.nn.functional.normalize(torch.randn(5, backbone.embed_dim, device=cuda), dim=-1)
    stream, matrix_stream = lane_stream(cuda), side_stream(cuda)
    torch.cuda.set_sync_debug_mode("error")
    try:
        classes_ready = record_ready(matrix_stream)  # as TextCache hands a class matrix out
        with torch.no_grad(), on_stream(stream):
            wait_for(stream, [classes_ready])  # what a lane pass does before reading the matrix
            hold_for(stream, [classes])
            cosines = encoder(normalise(gather_pixels([on_device, on_host], cuda))) @ classes.t()  # [2, 5]
    finally:
        torch.cuda.set_sync_debug_mode(0)
    with on_stream(stream):
        (host,) = results_to_host([cosines])
    assert isinstance(host, torch.Tensor) and host.shape == (2, 5) and host.abs().max() <= 1.0001
