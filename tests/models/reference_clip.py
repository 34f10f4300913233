"""CLIP's two towers restated plainly from the weights, for the method references to build on.

Written from the CLIP paper and open_clip's weight layout only: no function of models/ is used.
One sequence (or one image) at a time, one block at a time, explicit token lists, our own causal
mask, attention head by head, layer norm and GELU from their formulas. The towers are the frozen
parts every method shares, so a method reference differs from CLIP only where its paper says.

- text_feature: tokens (a list of [W] vectors, padded to the context length by the caller) plus
  positional embeddings, blocks under a causal mask, ln_final at the EOT position, text projection.
  `deep[j]` (MaPLe) replaces tokens 1..n with the given vectors at the input of block j.
- image_feature: patches in raster order through the patch embedding, the class token in front,
  positional embeddings, `appended` prompts (MaPLe) after the last patch without positional
  embedding, ln_pre, blocks (`tail[j]` replaces the last n tokens at the input of block j),
  ln_post of token 0, projection. Also returns every block's output tokens (GOPro).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

Vectors = Sequence[torch.Tensor]


def plain_layer_norm(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    """Each row of x [.., W]: (x - mean) / sqrt(biased variance + eps) * gain + bias."""
    mean = x.mean(dim=-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(variance + norm.eps) * norm.weight + norm.bias


def gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def linear(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    """y = W x + b for a vector x (or each row of x)."""
    return x @ layer.weight.T + layer.bias


def normalised(v: torch.Tensor) -> torch.Tensor:
    return v / torch.sqrt((v * v).sum(dim=-1, keepdim=True))


def attention(x: torch.Tensor, attn: torch.nn.MultiheadAttention, causal: bool) -> torch.Tensor:
    """Multi-head self-attention over one sequence x [T, W], head by head."""
    count, width = x.shape
    heads = attn.num_heads
    size = width // heads
    qkv = x @ attn.in_proj_weight.T + attn.in_proj_bias  # [T, 3W]
    q, k, v = qkv[:, :width], qkv[:, width : 2 * width], qkv[:, 2 * width :]
    future = torch.ones(count, count, dtype=torch.bool).triu(1)  # token t must not see t' > t
    outputs = []
    for h in range(heads):
        cols = slice(h * size, (h + 1) * size)
        scores = q[:, cols] @ k[:, cols].T / math.sqrt(size)  # [T, T]
        if causal:
            scores = scores.masked_fill(future, float("-inf"))
        outputs.append(torch.softmax(scores, dim=-1) @ v[:, cols])
    return torch.cat(outputs, dim=-1) @ attn.out_proj.weight.T + attn.out_proj.bias


def block(x: torch.Tensor, layer: torch.nn.Module, causal: bool) -> torch.Tensor:
    """One pre-norm residual block (attention, then MLP with GELU) on one sequence [T, W]."""
    x = x + attention(plain_layer_norm(x, layer.ln_1), layer.attn, causal)
    hidden = gelu(linear(plain_layer_norm(x, layer.ln_2), layer.mlp.c_fc))
    return x + linear(hidden, layer.mlp.c_proj)


def replace_rows(x: torch.Tensor, start: int, rows: Vectors) -> torch.Tensor:
    """x with rows start..start+len(rows)-1 replaced (a new tensor, x untouched)."""
    before, after = x[:start], x[start + len(rows) :]
    return torch.cat([before, torch.stack(list(rows)), after])


def text_feature(
    clip: torch.nn.Module, tokens: Vectors, eot: int, deep: dict[int, Vectors] | None = None
) -> torch.Tensor:
    """One prompt's [D] text feature (unnormalised) from its token vectors."""
    x = torch.stack(list(tokens)) + clip.positional_embedding  # [L, W]
    for j, layer in enumerate(clip.transformer.resblocks):
        if deep and j in deep:
            x = replace_rows(x, 1, deep[j])  # right after SOS
        x = block(x, layer, causal=True)
    return plain_layer_norm(x[eot], clip.ln_final) @ clip.text_projection


def patch_tokens(visual: torch.nn.Module, image: torch.Tensor) -> list[torch.Tensor]:
    """[3, H, W] -> one [Wv] token per patch, rows then columns (the conv as a dot product)."""
    kernel = visual.conv1.weight  # [Wv, 3, p, p]
    size = kernel.shape[-1]
    grid = image.shape[-1] // size
    flat = kernel.reshape(kernel.shape[0], -1)
    tokens = []
    for r in range(grid):
        for c in range(grid):
            patch = image[:, r * size : (r + 1) * size, c * size : (c + 1) * size]
            tokens.append(flat @ patch.reshape(-1))
    return tokens


def image_feature(
    clip: torch.nn.Module,
    image: torch.Tensor,
    appended: Vectors = (),
    tail: dict[int, Vectors] | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One image's [D] feature (unnormalised) and each block's output tokens [T (+ n), Wv]."""
    visual = clip.visual
    x = torch.stack([visual.class_embedding, *patch_tokens(visual, image)]) + visual.positional_embedding
    if appended:
        x = torch.cat([x, torch.stack(list(appended))])  # no positional embedding on prompts
    x = plain_layer_norm(x, visual.ln_pre)
    outputs = []
    for j, layer in enumerate(visual.transformer.resblocks):
        if tail and j in tail:
            x = replace_rows(x, len(x) - len(tail[j]), tail[j])
        x = block(x, layer, causal=False)
        outputs.append(x)
    return plain_layer_norm(x[0], visual.ln_post) @ visual.proj, outputs


def cross_entropy(logits: Sequence[torch.Tensor], labels: Sequence[int]) -> torch.Tensor:
    """Mean over rows of -log softmax(row)[label], one row at a time."""
    losses = [torch.logsumexp(row, dim=0) - row[label] for row, label in zip(logits, labels, strict=True)]
    return torch.stack(losses).mean()
