"""The one text path: CLIP's text tower run from token embeddings.

Every prompt learner builds its own token embeddings (learned context spliced between the frozen
embeddings of SOS and the class name) and hands them here, optionally with per-layer deep prompts.
Zero-shot class matrices go through the same function, so there is exactly one implementation of
"text features from tokens" in the code base.

The causal mask means a token only attends to earlier tokens, so the features at the EOT position
do not depend on anything after it. We therefore run the transformer only up to the longest EOT in
the batch: identical results, a fraction of the work (CLIP pads every prompt to 77 tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.backbone import Backbone
from models.transfer import to_device


class TextTooLongError(ValueError):
    """A prompt does not fit the text tower's context; we never silently truncate it."""


@dataclass(frozen=True)
class Tokenized:
    """Token ids padded to the context length, and where each prompt's EOT token sits."""

    tokens: torch.Tensor  # [N, L] int64
    eot_index: torch.Tensor  # [N] int64


def tokenize(backbone: Backbone, texts: Sequence[str]) -> Tokenized:
    """Tokenize with CLIP's BPE; raises TextTooLongError instead of truncating."""
    tokenizer = backbone.tokenizer
    limit = backbone.context_length
    rows = [[tokenizer.sot_token_id, *tokenizer.encode(text), tokenizer.eot_token_id] for text in texts]
    tokens = torch.zeros(len(rows), limit, dtype=torch.long)
    for i, (text, row) in enumerate(zip(texts, rows, strict=True)):
        if len(row) > limit:
            raise TextTooLongError(
                f"prompt {text[:80]!r} needs {len(row)} tokens but the text tower's context holds "
                f"{limit}; shorten the class name or the template"
            )
        tokens[i, : len(row)] = torch.tensor(row)
    eot_index = torch.tensor([len(row) - 1 for row in rows], dtype=torch.long)
    return Tokenized(tokens=tokens, eot_index=eot_index)


def token_count(backbone: Backbone, text: str) -> int:
    """BPE tokens of `text` alone (no SOS/EOT): what a class name occupies inside a prompt."""
    return len(backbone.tokenizer.encode(text))


def embed_tokens(backbone: Backbone, tokens: torch.Tensor) -> torch.Tensor:
    """[N, L] ids -> [N, L, W] frozen token embeddings (fp32, no grad)."""
    with torch.no_grad():  # pinned + non-blocking: one pageable copy per chunk would wait for the GPU
        return backbone.model.token_embedding(to_device(tokens, backbone.device)).float()


def encode_token_embeddings(
    backbone: Backbone,
    embeddings: torch.Tensor,
    eot_index: torch.Tensor,
    deep_prompts: Sequence[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """Text features, unnormalised, fp32.

    embeddings: [N, L, W] token embeddings (learned context already spliced in).
    eot_index: [N] position of each sequence's EOT token.
    deep_prompts: deep_prompts[j] ([n, W] or [N, n, W]) replaces tokens 1..n (right after SOS)
        at the input of block j; None entries and blocks past the list run unchanged (MaPLe).
    """
    model = backbone.model
    cast_dtype = backbone.cast_dtype
    if embeddings.shape[0] == 0:
        return embeddings.new_zeros(0, backbone.embed_dim, dtype=torch.float32)  # [0, D]
    # Read the lengths before moving the indices: every caller passes them on the CPU (tokenize()
    # makes them there), so these reads are host arithmetic, not device syncs; the copy up is
    # pinned and non-blocking for the same reason.
    length = int(eot_index.max().item()) + 1
    shortest = int(eot_index.min().item())  # deep prompts must end before every EOT
    eot_index = to_device(eot_index, embeddings.device)
    x = embeddings[:, :length].to(cast_dtype)  # [N, T, W], T <= L
    x = x + model.positional_embedding[:length].to(cast_dtype)
    mask = None if model.attn_mask is None else model.attn_mask[:length, :length]
    transformer = model.transformer
    if not transformer.batch_first:
        x = x.transpose(0, 1)  # [T, N, W]
    for j, block in enumerate(transformer.resblocks):
        prompt = deep_prompts[j] if deep_prompts is not None and j < len(deep_prompts) else None
        if prompt is not None:
            x = _replace_after_sos(x, prompt.to(x.dtype), transformer.batch_first, shortest)
        x = block(x, attn_mask=mask)
    if not transformer.batch_first:
        x = x.transpose(0, 1)  # [N, T, W]
    # LayerNorm is per token, so pooling first and normalising one token per row is exact.
    pooled = model.ln_final(x[torch.arange(x.shape[0], device=x.device), eot_index])  # [N, W]
    return _project(model.text_projection, pooled).float()  # [N, D]


def _project(projection: torch.nn.Module | torch.Tensor | None, pooled: torch.Tensor) -> torch.Tensor:
    """[N, W] -> [N, D] through CLIP's text projection (a matrix, a Linear, or none)."""
    if isinstance(projection, torch.nn.Module):
        return projection(pooled)
    return pooled if projection is None else pooled @ projection


def _replace_after_sos(x: torch.Tensor, prompt: torch.Tensor, batch_first: bool, eot: int) -> torch.Tensor:
    """Tokens 1..n of x ([N, T, W], or [T, N, W]) become the deep prompt ([n, W] or [N, n, W])."""
    if not batch_first:
        x = x.transpose(0, 1)
    n = prompt.shape[-2]
    if n + 1 > eot:
        raise ValueError(f"{n} deep prompt tokens would overwrite an EOT token at position {eot}")
    prompt = prompt.expand(x.shape[0], -1, -1) if prompt.dim() == 2 else prompt  # [N, n, W]
    x = torch.cat([x[:, :1], prompt, x[:, 1 + n :]], dim=1)
    return x if batch_first else x.transpose(0, 1)


def encode_texts(backbone: Backbone, texts: Sequence[str]) -> torch.Tensor:
    """Plain prompts -> [N, D] normalised features, through the one text path."""
    tokenized = tokenize(backbone, texts)
    embeddings = embed_tokens(backbone, tokenized.tokens)
    with torch.no_grad():
        features = encode_token_embeddings(backbone, embeddings, tokenized.eot_index)
    return F.normalize(features, dim=-1)
