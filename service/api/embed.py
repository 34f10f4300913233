"""The embedding data path (/v1/embeddings): images through the same decoder and lanes as
classification, texts through the version's text side and the text cache.

- Images: decode -> the lane whose batched pass yields the version's image features -> [N, D].
  That is the shared lane for every version whose image side is stock CLIP, including the
  image-conditioned methods (CoCoOp, GOPro: their learned part conditions the *text* on the stock
  image features), and the version's own lane for methods that replace the image side (MaPLe's
  prompted tower). The vectors are the ones classification compares with its class matrix.
- Texts, prompt "model" (default): the version's class embedding of each text, i.e. exactly the
  class-matrix row /classify would use for that label: the learned prompt (CoOp, MaPLe), or the
  zero-shot templates (`zeroshot`); trained classes come from the checkpoint, other texts from the
  text cache. Image-conditioned methods have no text embedding without an image: 422.
- Texts, prompt "none": the text as written through the plain text tower (no template, no
  learned context), on the text thread, not cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from models.backbone import Backbone
from models.text import encode_texts, token_count
from service.api.classify import stage
from service.catalog.versions import Version
from service.engine.batcher import Lane
from service.errors import Invalid
from service.runtime import Runtime

TextPrompt = Literal["model", "none"]


@dataclass(frozen=True)
class Embedded:
    model: dict[str, Any]  # version.ref()
    vectors: torch.Tensor  # [N, D] float32 on the CPU, L2-normalised
    tokens: int  # text tokens read (start and end tokens included); 0 for images


async def embed_images(rt: Runtime, model: str | None, images: list[bytes]) -> Embedded:
    with rt.registry.acquire(model) as version:  # held until the vectors are back
        with stage(rt.metrics, "decode"):
            pixels = await rt.decoder.decode(images)  # [N, 3, S, S] uint8
        vectors = await image_lane(rt, version).embed(pixels)  # batched pass: [N, D]
        return Embedded(version.ref(), vectors, 0)


def image_lane(rt: Runtime, version: Version) -> Lane:
    """The lane whose pass yields this version's image features (see the module docstring)."""
    learner = version.learner
    if learner is None or not learner.custom_image_encoder:
        return rt.batcher.shared
    if learner.image_conditioned or version.lane is None:  # no pass yields its image features alone
        raise Invalid(f"model {version.model!r} ({version.method}) cannot produce image embeddings")
    return version.lane


async def embed_texts(rt: Runtime, model: str | None, texts: list[str], prompt: TextPrompt) -> Embedded:
    with rt.registry.acquire(model) as version:
        with stage(rt.metrics, "text"):
            try:
                if prompt == "none":
                    vectors, tokens = await rt.text.run(plain_text_embeddings, rt.backbone, texts)
                else:
                    vectors = await prompted_text_embeddings(rt, version, texts)
                    tokens = await rt.text.run(token_total, rt.backbone, texts)
            except ValueError as error:  # a text longer than the text tower's context
                raise Invalid(str(error)) from error
        return Embedded(version.ref(), vectors, tokens)


async def prompted_text_embeddings(rt: Runtime, version: Version, texts: list[str]) -> torch.Tensor:
    """[N, D]: each text as this version's class embedding of it (stored, cached or encoded now)."""
    if version.image_conditioned:
        raise Invalid(
            f"model {version.model!r} ({version.method}) conditions its text on each image, so a text "
            'alone has no embedding under its prompt; send "prompt": "none" for the plain text tower'
        )
    templates = rt.zeroshot_templates if version.learner is None else ()
    matrix = await rt.text.class_matrix(version, texts, templates)  # [N, D] on the device
    return matrix.to_host()


def plain_text_embeddings(backbone: Backbone, texts: list[str]) -> tuple[torch.Tensor, int]:
    """[N, D] normalised embeddings of the texts as written, and the tokens read (text thread)."""
    vectors = encode_texts(backbone, texts).float().cpu()  # [N, D]
    return vectors, token_total(backbone, texts)


def token_total(backbone: Backbone, texts: list[str]) -> int:
    """Tokens the text tower reads for these texts: each one's BPE tokens plus start and end."""
    return sum(token_count(backbone, text) + 2 for text in texts)
