"""The /classify data path, as one function (DESIGN.md, "The data path of one /classify request")."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from service.api.parse import ClassifyInput
from service.catalog.versions import Version
from service.metrics import Metrics
from service.runtime import Runtime


async def classify(rt: Runtime, request: ClassifyInput) -> dict[str, Any]:
    """The data path: decode -> resize -> batcher (normalise on the device, image encoder shared by
    stock-image versions, cosine against the cached class matrix) -> softmax -> top-k -> response
    naming the version used. The route runs it under the request's deadline."""
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
            results = top_k(scores, cosine, labels, request.top_k)
        return {"model": version.ref(), "results": results}


async def class_side(
    rt: Runtime, version: Version, labels: list[str], templates: tuple[str, ...]
) -> torch.Tensor | tuple[str, ...]:
    """[C, D] class matrix (stored or cached embeddings); image-conditioned methods get the labels,
    since their text side is computed per image in their own lane."""
    if version.image_conditioned:
        return tuple(labels)
    return await rt.text.class_matrix(version, labels, templates)


def top_k(scores: torch.Tensor, cosine: torch.Tensor, labels: Sequence[str], k: int) -> list[dict[str, Any]]:
    """Per image the k best labels, sorted by score."""
    values, indices = scores.topk(min(k, scores.shape[1]), dim=-1)  # [N, k]
    return [
        {
            "predictions": [
                {"label": labels[j], "score": float(v), "cosine": float(cosine[i, j])}
                for v, j in zip(values[i].tolist(), indices[i].tolist(), strict=True)
            ]
        }
        for i in range(len(scores))
    ]


@contextmanager
def stage(metrics: Metrics, name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        metrics.stage_duration.labels(stage=name).observe(time.monotonic() - started)
