"""The model being pretrained: a whole open_clip CLIP (every tensor trains) and, for ProtoCLIP,
two projection heads and a second temperature for the prototype losses.

Text goes through THE text path (models/text.py) from trainable token embeddings, truncated at the
batch's longest EOT; the backbone checkpoint written at the end holds the CLIP alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.backbone import Backbone
from models.text import encode_token_embeddings

MAX_LOG_SCALE = math.log(100.0)


@dataclass
class Features:
    image: torch.Tensor  # [B, D] normalised CLIP embeddings
    text: torch.Tensor  # [B, D]
    image_proj: torch.Tensor | None = None  # [B, p] normalised prototype-space projections
    text_proj: torch.Tensor | None = None


def projection_head(dim: int, hidden: int, out: int) -> nn.Sequential:
    """ProtoCLIP's head: Linear -> BatchNorm -> ReLU -> Linear."""
    return nn.Sequential(
        nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out)
    )


class PretrainModel(nn.Module):
    backbone: Backbone

    def __init__(self, backbone: Backbone, heads: bool, hidden: int = 256, proto_dim: int = 64) -> None:
        super().__init__()
        object.__setattr__(self, "backbone", backbone)  # a dataclass around `clip`, not a submodule
        self.clip = backbone.model.requires_grad_(True)
        self.image_head: nn.Module | None = None
        self.text_head: nn.Module | None = None
        if heads:
            dim = backbone.embed_dim
            self.image_head = projection_head(dim, hidden, proto_dim)
            self.text_head = projection_head(dim, hidden, proto_dim)
            self.logit_scale_proto = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, pixels: torch.Tensor, tokens: torch.Tensor, eot: torch.Tensor) -> Features:
        """pixels [B, 3, H, W], tokens [B, L], eot [B] -> normalised features of both modalities."""
        image = self.clip.encode_image(pixels)  # [B, D]
        embeddings = self.clip.token_embedding(tokens)  # [B, L, W], trainable
        text = encode_token_embeddings(self.backbone, embeddings, eot)  # [B, D]
        features = Features(F.normalize(image.float(), dim=-1), F.normalize(text.float(), dim=-1))
        if self.image_head is not None and self.text_head is not None:
            features.image_proj = F.normalize(self.image_head(image).float(), dim=-1)  # [B, p]
            features.text_proj = F.normalize(self.text_head(text).float(), dim=-1)
        return features

    def scales(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        proto = self.logit_scale_proto.exp() if self.image_head is not None else None
        return self.clip.logit_scale.exp(), proto

    @torch.no_grad()
    def clamp_scales(self) -> None:
        """As CLIP: temperatures stay within [1, 100] (log scale in [0, ln 100])."""
        self.clip.logit_scale.clamp_(0, MAX_LOG_SCALE)
        if self.image_head is not None:
            self.logit_scale_proto.clamp_(0, MAX_LOG_SCALE)

    def visual_parameters(self) -> set[int]:
        return {id(p) for p in self.clip.visual.parameters()}
