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
