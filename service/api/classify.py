"""The classification data path, as one function (DESIGN.md, "The data path of one /classify
request"); /classify, the Hugging Face route and /v2 infer differ only in how they shape its answer."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from service.api.parse import ClassifyInput
from service.catalog.versions import Version
from service.engine.device_io import ClassMatrix
from service.metrics import Metrics
from service.runtime import Runtime

T = TypeVar("T")


@dataclass(frozen=True)
class Scored:
    """What the data path hands an answer shaper: the version's reference and the scores."""

    model: dict[str, Any]  # version.ref(): name, version, method, sha256
    labels: list[str]
    scores: torch.Tensor  # [N, C] softmax over the labels at CLIP's temperature
    cosine: torch.Tensor  # [N, C]


async def score(rt: Runtime, request: ClassifyInput, answer: Callable[[Scored], T]) -> T:
    """The data path: decode -> resize -> batcher (normalise on the device, image encoder shared by
    stock-image versions, cosine against the cached class matrix) -> softmax -> the protocol's
    answer (`answer`: top-k for /classify, a sorted list for Hugging Face, tensors for /v2),
    naming the version used. Routes run it under the request's deadline."""
    with rt.registry.acquire(request.model) as version:  # active now; held until we answer
        labels, templates = version.resolve(request.labels, request.templates, rt.zeroshot_templates)
        with stage(rt.metrics, "decode"):
            pixels = await rt.decoder.decode(request.images)  # [N, 3, S, S] uint8, host or GPU
        with stage(rt.metrics, "text"):
            classes = await class_side(rt, version, labels, templates)  # [C, D] cached, or labels
        assert version.lane is not None
        cosine = await version.lane.submit(pixels, classes)  # batched encoder pass: [N, C]
        with stage(rt.metrics, "score"):
            scores = torch.softmax(version.logit_scale * cosine, dim=-1)  # [N, C]
            return answer(Scored(version.ref(), labels, scores, cosine))


async def classify(rt: Runtime, request: ClassifyInput) -> dict[str, Any]:
    """POST /classify: per image the top-k labels, and the model version that answered."""

    def answer(scored: Scored) -> dict[str, Any]:
        results = top_k(scored.scores, scored.cosine, scored.labels, request.top_k)
        return {"model": scored.model, "results": results}

    return await score(rt, request, answer)


async def class_side(
    rt: Runtime, version: Version, labels: list[str], templates: tuple[str, ...]
) -> ClassMatrix | tuple[str, ...]:
    """[C, D] class matrix (stored or cached embeddings) with its ready event; image-conditioned
    methods get the labels, since their text side is computed per image in their own lane."""
    if version.image_conditioned:
        return tuple(labels)
    return await rt.text.class_matrix(version, labels, templates)


def top_k(scores: torch.Tensor, cosine: torch.Tensor, labels: Sequence[str], k: int) -> list[dict[str, Any]]:
    """Per image the k best labels, sorted by score.

    One topk, one gather and ONE host copy for the whole batch (scores may live on the GPU, where
    every float(tensor[i, j]) is a synchronising copy); the answer is then built from Python lists.
    float64 holds the float32/bf16 scores and the label indices exactly, so the numbers are those
    float(tensor) gave."""
    values, indices = scores.topk(min(k, scores.shape[1]), dim=-1)  # [N, k]
    picked = torch.stack((values.double(), cosine.gather(1, indices).double(), indices.double()))
    top_scores, top_cosines, top_indices = picked.tolist()  # [3, N, k] -> three [N][k] lists
    return [
        {
            "predictions": [
                {"label": labels[int(j)], "score": v, "cosine": c}
                for v, c, j in zip(row_scores, row_cosines, row_indices, strict=True)
            ]
        }
        for row_scores, row_cosines, row_indices in zip(top_scores, top_cosines, top_indices, strict=True)
    ]


@contextmanager
def stage(metrics: Metrics, name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        metrics.stage_duration.labels(stage=name).observe(time.monotonic() - started)
