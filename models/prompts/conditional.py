"""Image-conditioned context, shared by CoCoOp and GOPro.

Each image shifts the learned context by its own vector, so every (image, class) pair is a
separate text sequence: the text tower runs B x C times. Two things keep that affordable:
- classes are encoded in chunks of about `text_chunk` sequences, and at inference each chunk is
  reduced to logits at once, so memory is bounded by the chunk, not by the number of classes;
- every chunk is cut after its longest EOT (exact under the causal mask), not padded to 77.
With `grad_checkpoint`, training recomputes each chunk's text activations in the backward pass
instead of keeping them, trading ~1/3 more compute for memory at large C.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from models.backbone import Backbone
from models.prompts.base import LearnerConfig
from models.prompts.class_prompts import ClassPrompts
from models.prompts.coop import CoOp, CoOpConfig
from models.text import encode_token_embeddings


@dataclass
class ConditionedConfig(CoOpConfig):
    n_ctx: int = 4
    ctx_init: str | None = "a photo of a"
    grad_checkpoint: bool = False  # recompute text activations per chunk in backward (large C)


def per_image_feature_chunks(
    backbone: Backbone,
    prompts: ClassPrompts,
    ctx: torch.Tensor,
    sequences_per_call: int,
    grad_checkpoint: bool = False,
) -> Iterator[torch.Tensor]:
    """ctx [B, n_ctx, W] -> successive [B, c, D] normalised text features, c classes at a time."""
    batch = ctx.shape[0]
    classes_per_call = max(1, sequences_per_call // batch)
    for start in range(0, len(prompts), classes_per_call):
        part = prompts.subset(slice(start, start + classes_per_call)).trimmed()
        eot_index = part.eot_index.repeat(batch)  # [B * c], image-major like the prompts
        if grad_checkpoint and torch.is_grad_enabled():
            features = checkpoint(_encode_per_image, backbone, part, ctx, eot_index, use_reentrant=False)
        else:
            features = _encode_per_image(backbone, part, ctx, eot_index)
        yield F.normalize(features, dim=-1).view(batch, len(part), -1)  # [B, c, D]


def _encode_per_image(
    backbone: Backbone, part: ClassPrompts, ctx: torch.Tensor, eot_index: torch.Tensor
) -> torch.Tensor:
    return encode_token_embeddings(backbone, part.assemble_per_image(ctx), eot_index)  # [B * c, D]


class ConditionedCoOp(CoOp):
    """A CoOp context plus a per-image shift; subclasses say how the shift is computed."""

    image_conditioned = True
    config_class = ConditionedConfig
    config: ConditionedConfig

    def __init__(self, backbone: Backbone, classnames: Sequence[str], config: LearnerConfig | None = None):
        super().__init__(backbone, classnames, config)
        if self.config.class_specific or self.config.position != "end":
            raise ValueError(f"{self.method} uses one shared context with the class token at the end")

    def class_embeddings(self, classnames: Sequence[str]) -> torch.Tensor:
        raise TypeError(
            f"{self.method} is image-conditioned: its class features depend on each image, so there "
            f"is no [C, D] class matrix to cache; call logits(images, classnames)"
        )

    def shifted_context(self, shift: torch.Tensor) -> torch.Tensor:
        """shift [B, W] -> [B, n_ctx, W]: the same shift added to every context token."""
        return self.ctx.unsqueeze(0) + shift.unsqueeze(1)

    def per_image_class_features(self, ctx: torch.Tensor, classnames: Sequence[str]) -> torch.Tensor:
        """ctx [B, n_ctx, W] -> [B, C, D] normalised class features under each image's context."""
        return torch.cat(list(self._feature_chunks(ctx, classnames)), dim=1)

    def per_image_logits(
        self, image_features: torch.Tensor, ctx: torch.Tensor, classnames: Sequence[str]
    ) -> torch.Tensor:
        """[B, D] normalised image features, ctx [B, n_ctx, W] -> [B, C] logits, chunk by chunk so
        that at inference only one chunk of text features is alive at a time."""
        image_features = image_features.float()
        chunks = self._feature_chunks(ctx, classnames)
        logits = [torch.einsum("bd,bcd->bc", image_features, features) for features in chunks]
        return self.backbone.logit_scale * torch.cat(logits, dim=1)  # [B, C]

    def _feature_chunks(self, ctx: torch.Tensor, classnames: Sequence[str]) -> Iterator[torch.Tensor]:
        cfg = self.config
        prompts = self.class_prompts(classnames)
        return per_image_feature_chunks(self.backbone, prompts, ctx, cfg.text_chunk, cfg.grad_checkpoint)
