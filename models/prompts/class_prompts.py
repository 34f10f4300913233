"""Frozen token embeddings of per-class prompts, with a slot for a learned context.

For class c the prompt text is "<prefix words> <class name>." where the prefix words are the
context-init words ("a photo of a") or n_ctx placeholders "X". It is tokenized and embedded once
with the frozen token embedding; a learned context then replaces the first n_ctx prefix tokens
(right after SOS). Prefix words beyond n_ctx stay fixed: MaPLe learns "a photo" of "a photo of a".
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from models.backbone import Backbone
from models.text import TextTooLongError, embed_tokens, token_count, tokenize
from models.zeroshot import class_name_text

POSITIONS = ("end", "middle", "front")
PLACEHOLDER_WORD = "X"


def prefix_text(n_ctx: int, ctx_init: str | None) -> str:
    return ctx_init.strip() if ctx_init else " ".join([PLACEHOLDER_WORD] * n_ctx)


def context_from_words(backbone: Backbone, ctx_init: str, n_ctx: int) -> torch.Tensor:
    """[n_ctx, W] embeddings of the first n_ctx tokens of `ctx_init` (fp32)."""
    tokenized = tokenize(backbone, [ctx_init])
    available = int(tokenized.eot_index[0]) - 1
    if n_ctx > available:
        raise ValueError(f"ctx_init {ctx_init!r} has {available} tokens; cannot initialise {n_ctx}")
    return embed_tokens(backbone, tokenized.tokens)[0, 1 : 1 + n_ctx].clone()


def learned_context_length(backbone: Backbone, n_ctx: int, ctx_init: str | None) -> int:
    """With word init the context is at most as long as the init words (CoOp's rule)."""
    return min(n_ctx, token_count(backbone, ctx_init)) if ctx_init else n_ctx


class ClassPrompts:
    """The frozen parts of C prompts; `assemble(ctx)` splices a context in. Not a module: it is
    rebuilt for every class list and never saved."""

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        n_ctx: int,
        ctx_init: str | None = None,
        position: str = "end",
    ) -> None:
        if position not in POSITIONS:
            raise ValueError(f"class token position must be one of {POSITIONS}, got {position!r}")
        if position != "end" and ctx_init:
            raise ValueError("class token position 'middle'/'front' needs a random-init context")
        names = [class_name_text(name) for name in classnames]
        prefix = prefix_text(n_ctx, ctx_init)
        try:
            tokenized = tokenize(backbone, [f"{prefix} {name}." for name in names])
        except TextTooLongError as error:
            raise TextTooLongError(
                f"class name too long for a prompt with {n_ctx} context tokens: {error}"
            ) from error
        embeddings = embed_tokens(backbone, tokenized.tokens)  # [C, L, W]
        self.n_ctx = n_ctx
        self.position = position
        self.prefix = embeddings[:, :1]  # [C, 1, W] SOS
        self.suffix = embeddings[:, 1 + n_ctx :]  # [C, L-1-n_ctx, W] rest of prefix, name, ".", EOT, pad
        self.name_lengths = [token_count(backbone, name) for name in names]
        self.eot_index = tokenized.eot_index  # [C]
        self.classnames = list(classnames)

    def __len__(self) -> int:
        return len(self.classnames)

    def subset(self, rows: slice) -> ClassPrompts:
        """The prompts of a contiguous range of classes (for chunked encoding)."""
        part = copy.copy(self)
        part.prefix, part.suffix = self.prefix[rows], self.suffix[rows]
        part.name_lengths, part.eot_index = self.name_lengths[rows], self.eot_index[rows]
        part.classnames = self.classnames[rows]
        return part

    def select(self, indices: torch.Tensor) -> ClassPrompts:
        """The prompts of classes `indices` [N] (repeats allowed), e.g. one row per sample."""
        part = copy.copy(self)
        rows = indices.to(self.prefix.device)
        part.prefix, part.suffix = self.prefix[rows], self.suffix[rows]
        part.eot_index = self.eot_index[indices.cpu()]
        part.name_lengths = [self.name_lengths[i] for i in indices.tolist()]
        part.classnames = [self.classnames[i] for i in indices.tolist()]
        return part

    def trimmed(self) -> ClassPrompts:
        """The same prompts cut after their longest EOT. The causal mask makes this exact, and it
        keeps B x C per-image prompt batches from carrying CLIP's padding to 77 tokens."""
        part = copy.copy(self)
        keep = int(self.eot_index.max()) - self.n_ctx  # suffix tokens up to and including the last EOT
        part.suffix = self.suffix[:, :keep]
        return part

    def assemble_per_image(self, ctx: torch.Tensor) -> torch.Tensor:
        """ctx [B, n_ctx, W], one context per image -> [B * C, L, W] prompts, image-major
        (row b * C + c is class c under image b's context). Class token at the end only."""
        if self.position != "end":
            raise ValueError("per-image contexts (CoCoOp, GOPro, SHIP) put the class token at the end")
        batch, count = ctx.shape[0], len(self)
        prefix = self.prefix.to(ctx.device).unsqueeze(0).expand(batch, -1, -1, -1)  # [B, C, 1, W]
        suffix = self.suffix.to(ctx.device).unsqueeze(0).expand(batch, -1, -1, -1)  # [B, C, S, W]
        ctx = ctx.unsqueeze(1).expand(-1, count, -1, -1)  # [B, C, n_ctx, W]
        prompts = torch.cat([prefix, ctx, suffix], dim=2)  # [B, C, L, W]
        return prompts.flatten(0, 1)  # [B * C, L, W]

    def assemble(self, ctx: torch.Tensor) -> torch.Tensor:
        """ctx [n_ctx, W] (shared) or [C, n_ctx, W] (per class) -> [C, L, W] prompt embeddings."""
        count = len(self)
        prefix = self.prefix.to(ctx.device)
        suffix = self.suffix.to(ctx.device)
        ctx = ctx.unsqueeze(0).expand(count, -1, -1) if ctx.dim() == 2 else ctx  # [C, n_ctx, W]
        if self.position == "end":
            return torch.cat([prefix, ctx, suffix], dim=1)
        rows = []
        half = self.n_ctx // 2
        for c, length in enumerate(self.name_lengths):
            name, rest = suffix[c : c + 1, :length], suffix[c : c + 1, length:]
            parts = (
                [ctx[c : c + 1, :half], name, ctx[c : c + 1, half:], rest]
                if self.position == "middle"
                else [name, ctx[c : c + 1], rest]
            )
            rows.append(torch.cat([prefix[c : c + 1], *parts], dim=1))
        return torch.cat(rows)
