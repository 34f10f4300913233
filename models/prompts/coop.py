"""CoOp (Zhou et al., IJCV'22): learned context vectors in front of (or around) the class name.

The only learned tensor is `ctx`: [n_ctx, W] shared by all classes, or [C, n_ctx, W] class-specific.
Text features depend only on the prompts, so at serving time the class matrix is computed once and
the image side is stock CLIP followed by one matmul.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.backbone import Backbone
from models.prompts.base import LearnerConfig, PromptLearner
from models.prompts.class_prompts import ClassPrompts, context_from_words, learned_context_length
from models.text import encode_token_embeddings


@dataclass
class CoOpConfig(LearnerConfig):
    n_ctx: int = 16
    ctx_init: str | None = None  # e.g. "a photo of a"; then n_ctx = min(n_ctx, its token count)
    class_specific: bool = False  # CSC: one context per class (random init only)
    position: str = "end"  # class token at "end", "middle" or "front"
    init_std: float = 0.02


class CoOp(PromptLearner):
    method = "coop"
    config_class = CoOpConfig
    config: CoOpConfig

    def __init__(self, backbone: Backbone, classnames: Sequence[str], config: LearnerConfig | None = None):
        super().__init__(backbone, classnames, config)
        cfg = self.config
        if cfg.class_specific and cfg.ctx_init:
            raise ValueError("class-specific context (CSC) needs random init; drop ctx_init")
        self.n_ctx = learned_context_length(backbone, cfg.n_ctx, cfg.ctx_init)
        self.ctx = nn.Parameter(self._initial_context(len(self.classnames)))
        self._prompts_cache: dict[tuple[str, ...], ClassPrompts] = {}

    def _initial_context(self, n_classes: int) -> torch.Tensor:
        cfg, width = self.config, self.backbone.text_width
        if cfg.ctx_init:
            return context_from_words(self.backbone, cfg.ctx_init, self.n_ctx).cpu()
        shape = (n_classes, self.n_ctx, width) if cfg.class_specific else (self.n_ctx, width)
        return torch.randn(shape) * cfg.init_std

    def class_prompts(self, classnames: Sequence[str]) -> ClassPrompts:
        """Frozen prompt parts for `classnames`, cached per class list (rebuilt cheaply otherwise)."""
        key = tuple(classnames)
        if key not in self._prompts_cache:
            if len(self._prompts_cache) > 8:
                self._prompts_cache.clear()
            cfg = self.config
            self._prompts_cache[key] = ClassPrompts(
                self.backbone, classnames, self.n_ctx, cfg.ctx_init, cfg.position
            )
        return self._prompts_cache[key]

    def context_for(self, classnames: Sequence[str]) -> torch.Tensor:
        """[n_ctx, W] shared context, or [C, n_ctx, W] when class-specific (trained classes only)."""
        if not self.config.class_specific:
            return self.ctx
        if list(classnames) != self.classnames:
            raise ValueError("a class-specific CoOp context only applies to the classes it was trained on")
        return self.ctx

    def class_embeddings(self, classnames: Sequence[str]) -> torch.Tensor:
        prompts = self.class_prompts(classnames)
        ctx = self.context_for(classnames)
        chunk = len(prompts) if torch.is_grad_enabled() else self.config.text_chunk
        features = []
        for start in range(0, len(prompts), chunk):
            rows = slice(start, start + chunk)
            ctx_rows = ctx if ctx.dim() == 2 else ctx[rows]
            embeddings = prompts.subset(rows).assemble(ctx_rows)  # [c, L, W]
            features.append(self.encode_prompts(embeddings, prompts.eot_index[rows]))
        return F.normalize(torch.cat(features), dim=-1)  # [C, D]

    def encode_prompts(self, embeddings: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
        """[N, L, W] assembled prompts -> [N, D] unnormalised text features (MaPLe adds deep prompts)."""
        return encode_token_embeddings(self.backbone, embeddings, eot_index)
