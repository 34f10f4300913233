"""CUDA-graph encoder: the bucket logic on the CPU (static passes that run the eager encoder, with
the same fixed buffers a graph has), and real capture and replay on CUDA (`gpu`)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from models.backbone import Backbone, build_backbone
from service.engine.backends import TorchImageEncoder
from service.engine.cuda_graphs import (
    BucketedEncoder,
    StaticPass,
    chunk_plan,
    default_buckets,
    graphed_image_encoder,
)


def test_default_buckets_are_powers_of_two_up_to_max_batch() -> None:
    assert default_buckets(32) == (1, 2, 4, 8, 16, 32)
    assert default_buckets(48) == (1, 2, 4, 8, 16, 32, 48)
    assert default_buckets(1) == (1,)


def test_chunk_plan_uses_the_smallest_bucket_and_chunks_past_the_largest() -> None:
    assert chunk_plan(5, [8, 1, 4, 2]) == [(0, 5, 8)]
    assert chunk_plan(4, [1, 2, 4, 8]) == [(0, 4, 4)]
    assert chunk_plan(20, [1, 8, 16]) == [(0, 16, 16), (16, 4, 8)]
    assert chunk_plan(33, [32]) == [(0, 32, 32), (32, 1, 32)]
    assert chunk_plan(0, [1, 2]) == []
    with pytest.raises(ValueError):
        chunk_plan(3, [])


def eager_passes(
    encode: Callable[[torch.Tensor], torch.Tensor], buckets: list[int], size: int, dim: int
) -> tuple[dict[int, StaticPass], list[int]]:
    """What capture gives, minus the graph: fixed buffers and a replay that reads and writes them.
    The inputs start as huge values, standing in for the stale rows a real replay pads with."""
    replays: list[int] = []
    passes = {}
    for bucket in buckets:
        inputs = torch.full((bucket, 3, size, size), 1e4)
        outputs = torch.empty(bucket, dim)

        def replay(i: torch.Tensor = inputs, o: torch.Tensor = outputs, b: int = bucket) -> None:
            replays.append(b)
            o.copy_(encode(i))

        passes[bucket] = StaticPass(inputs, outputs, replay)
    return passes, replays


def test_bucketed_encoder_pads_replays_and_slices_like_eager(tiny_backbone: Backbone) -> None:
    size, eager = tiny_backbone.preprocessing.image_size, TorchImageEncoder(tiny_backbone)
    passes, replays = eager_passes(eager, [1, 4, 8], size, tiny_backbone.embed_dim)
    encoder = BucketedEncoder(passes)
    pixels = torch.randn(19, 3, size, size, generator=torch.Generator().manual_seed(0))
    for n in (3, 1, 8, 19, 5):  # smaller after larger: padding rows hold the previous batch's rows
        got = encoder(pixels[:n])
        assert got.shape == (n, tiny_backbone.embed_dim)
        assert torch.allclose(got, eager(pixels[:n]), atol=1e-5)
    assert replays == [4, 1, 8, 8, 8, 4, 8]


def test_outputs_are_copies_that_the_next_replay_does_not_overwrite(tiny_backbone: Backbone) -> None:
    size, eager = tiny_backbone.preprocessing.image_size, TorchImageEncoder(tiny_backbone)
    encoder = BucketedEncoder(eager_passes(eager, [2], size, tiny_backbone.embed_dim)[0])
    first_pixels, second_pixels = torch.randn(2, 3, size, size), torch.randn(2, 3, size, size)
    first = encoder(first_pixels)
    encoder(second_pixels)
    assert torch.allclose(first, eager(first_pixels), atol=1e-5)


@pytest.mark.gpu
def test_graph_replay_matches_eager_in_bf16_and_never_recaptures(monkeypatch: pytest.MonkeyPatch) -> None:
    backbone = build_backbone("clipserve-tiny-vit", None, precision="bf16", device="cuda", seed=0)
    eager = TorchImageEncoder(backbone)
    encoder = graphed_image_encoder(backbone, [1, 2, 4, 8])
    captures: list[object] = []
    original = torch.cuda.CUDAGraph.capture_begin

    def counting_capture_begin(self: torch.cuda.CUDAGraph, *args: object, **kwargs: object) -> None:
        captures.append(self)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.cuda.CUDAGraph, "capture_begin", counting_capture_begin)
    size = backbone.preprocessing.image_size
    pixels = torch.randn(13, 3, size, size, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    with torch.no_grad():
        for n in (1, 3, 8, 13, 2, 8):
            got, expected = encoder(pixels[:n]), eager(pixels[:n])
            assert got.shape == expected.shape == (n, backbone.embed_dim)
            assert (got - expected).abs().max() < 2e-2, n  # bf16: same kernels, maybe other batch shapes
    assert captures == []  # every call replayed a graph captured at construction


@pytest.mark.gpu
def test_graph_replay_on_a_side_stream_waits_for_its_input() -> None:
    """The lane replays on its own stream; the result must reflect the input written just before."""
    backbone = build_backbone("clipserve-tiny-vit", None, precision="bf16", device="cuda", seed=0)
    encoder, eager = graphed_image_encoder(backbone, [4]), TorchImageEncoder(backbone)
    size = backbone.preprocessing.image_size
    stream = torch.cuda.Stream()
    with torch.no_grad(), torch.cuda.stream(stream):
        for seed in range(5):
            pixels = torch.randn(
                4, 3, size, size, device="cuda", generator=torch.Generator("cuda").manual_seed(seed)
            )
            assert (encoder(pixels) - eager(pixels)).abs().max() < 2e-2
