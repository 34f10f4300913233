"""Test-only prompt methods that exercise the service's lanes through the PromptLearner ClassVars.

They are honest stand-ins for MaPLe (own image side) and CoCoOp/GOPro (image-conditioned text):
the service sees only the interface and the ClassVars, exactly as it will with the real methods.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.backbone import Backbone
from models.checkpoint import Checkpoint
from models.prompts import CoOp, LearnerConfig, PromptLearner


class ShiftedImage(CoOp):
    """A learned shift of the image features: the image side is not stock CLIP."""

    method = "test-shifted-image"
    custom_image_encoder = True

    def __init__(self, backbone: Backbone, classnames: Sequence[str], config: LearnerConfig | None = None):
        super().__init__(backbone, classnames, config)
        self.shift = nn.Parameter(torch.randn(backbone.embed_dim) * 0.5)

    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.backbone.encode_images(images) + self.shift, dim=-1)  # [B, D]


class ImageConditioned(CoOp):
    """Class embeddings move towards each image: the text side depends on the image."""

    method = "test-image-conditioned"
    image_conditioned = True

    def __init__(self, backbone: Backbone, classnames: Sequence[str], config: LearnerConfig | None = None):
        super().__init__(backbone, classnames, config)
        self.alpha = nn.Parameter(torch.tensor(0.7))

    def logits(self, images: torch.Tensor, classnames: Sequence[str]) -> torch.Tensor:
        features = self.image_embeddings(images)  # [B, D]
        text = self.class_embeddings(classnames)  # [C, D]
        conditioned = F.normalize(text.unsqueeze(0) + self.alpha * features.unsqueeze(1), dim=-1)  # [B, C, D]
        return self.backbone.logit_scale * torch.einsum("bd,bcd->bc", features, conditioned)  # [B, C]


class SlowImage(ShiftedImage):
    """An image side that takes `delay_s` per pass: drives deadlines (504) in its own lane."""

    method = "test-slow-image"
    delay_s = 1.0

    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay_s)
        return super().image_embeddings(images)


class SlowLoading(CoOp):
    """Takes `delay_s` to load from a checkpoint: makes 'not ready until loaded' observable."""

    method = "test-slow-loading"
    delay_s = 1.5

    @classmethod
    def from_checkpoint(cls, backbone: Backbone, checkpoint: Checkpoint) -> PromptLearner:
        time.sleep(cls.delay_s)
        return super().from_checkpoint(backbone, checkpoint)
