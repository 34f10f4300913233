"""GOPro (Singha et al., BMVC'23): a CoOp context shifted per image by style and content
primitives of every ViT block, trained with two augmented views.

For the output tokens x_l [B, T, Wv] of each block l (class token included, no gradient):
  mu_l = mean over tokens, sigma_l = sqrt((sum over tokens of (x_l - mu_l)^2 + eps) / T),
  style_l = S_l((mu_l + sigma_l) / 2), content_l = K_l(mu_l), each Linear(Wv -> W),
  v = rho(stack_l((style_l + content_l) / 2)) with rho Linear(L -> 1) across layers: [B, W],
  ctx_i = ctx + v_i (the same shift on every token); logits as in CoCoOp (B x C text sequences).
Loss (from the reference code): CE on the original view
  + consistency_weight * [MSE(T, T_moco) + MSE(T, T_augmix)] over the per-image class features
  + contrastive_weight * NT-Xent(tau) between image_projector(f) and image_projector(f_moco),
with image_projector = Linear(D -> D) + BatchNorm1d(D). The views come from the batch
(`Batch.views`), made per image from the raw image by the data side. The reference's unused
meta-net is not built. Only the original view is used at inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.backbone import Backbone
from models.prompts.base import Batch, LearnerConfig, vision_transformer
from models.prompts.conditional import ConditionedConfig, ConditionedCoOp

MOCO_VIEW, AUGMIX_VIEW = "moco", "augmix"


@dataclass
class GOProConfig(ConditionedConfig):
    consistency_weight: float = 1.0
    contrastive_weight: float = 0.1
    temperature: float = 0.1
    sigma_eps: float = 2.3e-8


class GOPro(ConditionedCoOp):
    method = "gopro"
    config_class = GOProConfig
    config: GOProConfig
    extra_views = (MOCO_VIEW, AUGMIX_VIEW)
    accepts_cached_features = False  # the prompt shift needs every block's tokens
    requires_vit = True

    def __init__(self, backbone: Backbone, classnames: Sequence[str], config: LearnerConfig | None = None):
        super().__init__(backbone, classnames, config)
        visual = vision_transformer(backbone, self.method)
        layers, vision_width = len(visual.transformer.resblocks), visual.class_embedding.shape[-1]
        width, dim = backbone.text_width, backbone.embed_dim
        self.style = nn.ModuleList([nn.Linear(vision_width, width) for _ in range(layers)])
        self.content = nn.ModuleList([nn.Linear(vision_width, width) for _ in range(layers)])
        self.rho = nn.Linear(layers, 1)
        self.image_projector = nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim))

    # -- inference -----------------------------------------------------------------------------

    def logits(self, images: torch.Tensor, classnames: Sequence[str]) -> torch.Tensor:
        features, ctx = self.encode_view(images)
        return self.per_image_logits(features, ctx, classnames)

    def encode_view(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 3, H, W] -> ([B, D] normalised stock features, [B, n_ctx, W] shifted context)."""
        features, tokens = self._image_tokens(images)
        return features, self.shifted_context(self.prompt_shift(tokens))

    def prompt_shift(self, tokens: list[torch.Tensor]) -> torch.Tensor:
        """Per-block tokens, L x [B, T, Wv] -> [B, W]: style/content mixed across blocks."""
        mixed = []
        for style, content, x in zip(self.style, self.content, tokens, strict=True):
            x = x.float()
            mean = x.mean(dim=1)  # [B, Wv]
            std = (((x - mean.unsqueeze(1)) ** 2).sum(dim=1) + self.config.sigma_eps).div(x.shape[1]).sqrt()
            mixed.append((style((mean + std) / 2) + content(mean)) / 2)  # [B, W]
        stacked = torch.stack(mixed, dim=-1)  # [B, W, L]
        return self.rho(stacked).squeeze(-1)  # [B, W]

    @torch.no_grad()
    def _image_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One frozen pass: normalised features [B, D] and every block's output [B, 1 + HW, Wv]."""
        visual = vision_transformer(self.backbone, self.method)
        pixels = images.to(self.backbone.device, self.backbone.cast_dtype)
        out = visual.forward_intermediates(pixels, output_fmt="NLC", output_extra_tokens=True)
        prefixes, patches = out["image_intermediates_prefix"], out["image_intermediates"]
        tokens = [torch.cat(pair, dim=1) for pair in zip(prefixes, patches, strict=True)]  # [B, 1 + HW, Wv]
        return F.normalize(out["image_features"].float(), dim=-1), tokens

    # -- training ------------------------------------------------------------------------------

    def loss(self, batch: Batch) -> torch.Tensor:
        images, moco, augmix = self._views(batch)
        features, ctx = self.encode_view(images)
        class_features = self.per_image_class_features(ctx, self.classnames)  # [B, C, D]
        logits = self.backbone.logit_scale * torch.einsum("bd,bcd->bc", features, class_features)
        ce = F.cross_entropy(logits, batch.labels.to(logits.device))
        moco_features, moco_ctx = self.encode_view(moco)
        consistency = F.mse_loss(class_features, self.per_image_class_features(moco_ctx, self.classnames))
        _, augmix_ctx = self.encode_view(augmix)
        consistency = consistency + F.mse_loss(
            class_features, self.per_image_class_features(augmix_ctx, self.classnames)
        )
        contrastive = nt_xent(
            self.image_projector(features), self.image_projector(moco_features), self.config.temperature
        )
        cfg = self.config
        return ce + cfg.consistency_weight * consistency + cfg.contrastive_weight * contrastive

    def _views(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        missing = [name for name in self.extra_views if name not in batch.views]
        if batch.images is None or missing:
            raise ValueError(f"gopro trains on images plus the views {self.extra_views}; missing {missing}")
        if self.training and batch.images.shape[0] < 2:
            raise ValueError("gopro's image projector (BatchNorm) and contrastive loss need batches of >= 2")
        return batch.images, batch.views[MOCO_VIEW], batch.views[AUGMIX_VIEW]


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss between two views [B, P]: for each row, its partner in the other view is the
    positive; all other rows of both views (never itself) are negatives. Symmetric."""
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    targets = torch.arange(a.shape[0], device=a.device)
    self_mask = torch.eye(a.shape[0], device=a.device, dtype=torch.bool)
    within_a = (a @ a.t() / temperature).masked_fill(self_mask, float("-inf"))  # [B, B]
    within_b = (b @ b.t() / temperature).masked_fill(self_mask, float("-inf"))
    across = a @ b.t() / temperature  # [B, B]; diagonal = positives
    loss_a = F.cross_entropy(torch.cat([across, within_a], dim=1), targets)
    loss_b = F.cross_entropy(torch.cat([across.t(), within_b], dim=1), targets)
    return (loss_a + loss_b) / 2
