"""MaPLe (Khattak et al., CVPR'23): coupled language and vision prompts in the first J blocks.

Text: a CoOp prompt whose first n_ctx (2) tokens after SOS are learned (init: the first 2 tokens of
"a photo of a"; "of a" stays fixed); before text blocks 1..J-1 those n_ctx tokens are replaced by
deep prompts P_t^j [n_ctx, W] (through the one text path's `deep_prompts`).
Vision: prompts are projections of the text prompts (the coupling functions), never free:
P_v^0 = proj(ctx) and P_v^j = proj_j(P_t^j), each Linear(W -> vision width). P_v^0 is appended
after the patch tokens (no positional embedding) *before* ln_pre; before vision blocks 1..J-1 the
last n_ctx tokens are replaced by P_v^j. The pooled token ignores the prompt slots.
Text features depend on the prompts only (cacheable per class); the image side is custom.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer
from torch import nn

from models.backbone import Backbone
from models.prompts.base import LearnerConfig, vision_transformer
from models.prompts.coop import CoOp, CoOpConfig
from models.text import encode_token_embeddings


@dataclass
class MaPLeConfig(CoOpConfig):
    n_ctx: int = 2
    ctx_init: str | None = "a photo of a"  # learns its first n_ctx tokens; the rest stay fixed
    prompt_depth: int = 9  # J: prompts enter blocks 0..J-1 of both towers; 1 = shallow (no deep)


class MaPLe(CoOp):
    method = "maple"
    config_class = MaPLeConfig
    config: MaPLeConfig
    custom_image_encoder = True
    accepts_cached_features = False
    requires_vit = True

    def __init__(self, backbone: Backbone, classnames: Sequence[str], config: LearnerConfig | None = None):
        super().__init__(backbone, classnames, config)
        cfg = self.config
        if cfg.class_specific or cfg.position != "end":
            raise ValueError("maple uses one shared context right after SOS (class token at the end)")
        visual = vision_transformer(backbone, self.method)
        _check_depth(cfg.prompt_depth, backbone, visual)
        width, vision_width = backbone.text_width, visual.class_embedding.shape[-1]
        self.proj = nn.Linear(width, vision_width)  # coupling for block 0
        deep = cfg.prompt_depth - 1
        self.deep_text = nn.ParameterList(
            [nn.Parameter(torch.randn(self.n_ctx, width) * cfg.init_std) for _ in range(deep)]
        )
        # As the reference code: one Linear initialised once and copied, so every deep coupling
        # starts from the same weights (they diverge in training); `proj` has its own init.
        coupling = nn.Linear(width, vision_width)
        self.deep_proj = nn.ModuleList([copy.deepcopy(coupling) for _ in range(deep)])

    # -- text side -----------------------------------------------------------------------------

    def encode_prompts(self, embeddings: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
        # Block 0 reads the assembled prompt; blocks 1..J-1 get P_t^j after SOS.
        deep_prompts = [None, *self.deep_text]
        return encode_token_embeddings(self.backbone, embeddings, eot_index, deep_prompts)

    # -- image side ----------------------------------------------------------------------------

    def visual_prompts(self) -> list[torch.Tensor]:
        """[n_ctx, vision width] for blocks 0..J-1, all projected from the text prompts."""
        return [self.proj(self.ctx), *(p(t) for p, t in zip(self.deep_proj, self.deep_text, strict=True))]

    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, D] normalised, through the prompted ViT (differentiable)."""
        visual = vision_transformer(self.backbone, self.method)
        prompts = self.visual_prompts()
        x = _patch_tokens(visual, images.to(self.backbone.device, self.backbone.cast_dtype))  # [B, T, Wv]
        x = torch.cat([x, _batched(prompts[0], x)], dim=1)  # [B, T + n, Wv]
        x = visual.ln_pre(x)
        x = _blocks_with_tail_prompts(visual, x, prompts)
        pooled, _ = visual._pool(x[:, : -self.n_ctx])  # prompt slots take no part in pooling
        if visual.proj is not None:
            pooled = pooled @ visual.proj  # [B, D]
        return F.normalize(pooled.float(), dim=-1)


def _check_depth(depth: int, backbone: Backbone, visual: VisionTransformer) -> None:
    blocks = min(len(backbone.model.transformer.resblocks), len(visual.transformer.resblocks))
    if not 1 <= depth <= blocks:
        raise ValueError(
            f"maple prompt_depth must be between 1 and {blocks} (the blocks of this backbone's "
            f"towers), got {depth}"
        )


def _batched(prompt: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[n, Wv] -> [B, n, Wv] in the dtype of `like` (the frozen tower's cast dtype)."""
    return prompt.to(like.dtype).unsqueeze(0).expand(like.shape[0], -1, -1)


def _patch_tokens(visual: VisionTransformer, pixels: torch.Tensor) -> torch.Tensor:
    """visual._embeds without its ln_pre, which MaPLe applies after appending the prompts."""
    x = visual.conv1(pixels)  # [B, Wv, g, g]
    x = x.flatten(2).transpose(1, 2)  # [B, g*g, Wv]
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)  # [B, 1, Wv]
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)  # [B, T, Wv]
    return visual.patch_dropout(x)


def _blocks_with_tail_prompts(
    visual: VisionTransformer, x: torch.Tensor, prompts: list[torch.Tensor]
) -> torch.Tensor:
    """Run the ViT blocks on [B, T + n, Wv], replacing the last n tokens before blocks 1..J-1."""
    n = prompts[0].shape[0]
    transformer = visual.transformer
    for j, block in enumerate(transformer.resblocks):
        if 1 <= j < len(prompts):
            x = torch.cat([x[:, :-n], _batched(prompts[j], x)], dim=1)
        x = block(x) if transformer.batch_first else block(x.transpose(0, 1)).transpose(0, 1)
    return x
