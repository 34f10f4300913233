"""CoCoOp (Zhou et al., CVPR'22): a CoOp context shifted per image by a small meta-net.

pi_i = meta_net(f_i) with f_i the *normalised* stock image feature; ctx_i = ctx + pi_i (the same
bias on every context token); logits_i = scale * f_i . norm(text(ctx_i, class c)) for every class.
Learned: `ctx` [n_ctx, W] (default 4 tokens from "a photo of a") and the meta-net
Linear(D -> D // 16) -> ReLU -> Linear(D // 16 -> W), D the image embedding dim, W the text width.
The meta-net only needs the stock image feature, so training may use cached features and the
service may share the stock image-encoder pass (`logits_from_features`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.backbone import Backbone
from models.prompts.base import Batch, LearnerConfig
from models.prompts.conditional import ConditionedConfig, ConditionedCoOp


@dataclass
class CoCoOpConfig(ConditionedConfig):
    meta_reduction: int = 16  # meta-net hidden width = image embedding dim // meta_reduction


class CoCoOp(ConditionedCoOp):
    method = "cocoop"
    config_class = CoCoOpConfig
    config: CoCoOpConfig

    def __init__(self, backbone: Backbone, classnames: Sequence[str], config: LearnerConfig | None = None):
        super().__init__(backbone, classnames, config)
        vis_dim = backbone.embed_dim
        hidden = max(1, vis_dim // self.config.meta_reduction)
        self.meta_net = nn.Sequential(
            nn.Linear(vis_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, backbone.text_width)
        )

    def logits(self, images: torch.Tensor, classnames: Sequence[str]) -> torch.Tensor:
        return self.logits_from_features(self.image_embeddings(images), classnames)

    def logits_from_features(self, image_features: torch.Tensor, classnames: Sequence[str]) -> torch.Tensor:
        """[B, D] normalised stock image features -> [B, C] logits (B x C text sequences)."""
        image_features = image_features.float()
        ctx = self.shifted_context(self.meta_net(image_features))  # [B, n_ctx, W]
        return self.per_image_logits(image_features, ctx, classnames)

    def loss(self, batch: Batch) -> torch.Tensor:
        logits = self.logits_from_features(self._batch_image_features(batch), self.classnames)
        return F.cross_entropy(logits, batch.labels.to(logits.device))
