"""CoOp and CoCoOp restated from their papers (Zhou et al., IJCV'22 and CVPR'22), plainly.

Prompts are explicit token lists: [SOS] [context vectors] [class-name tokens] [.] [EOT] [padding],
with the class name's BPE ids from open_clip's own SimpleTokenizer (not the code under test).
Class-token positions (CoOp §3.2): "end" as above, "middle" puts the first half of the context
before the name and the rest after it, "front" puts the name right after SOS.
CoCoOp: pi = meta_net(f) with f the normalised image feature, meta_net = Linear -> ReLU ->
Linear; every context vector of image i becomes ctx_k + pi_i; logits_i,c = scale * f_i . t_i,c.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from open_clip.tokenizer import SimpleTokenizer

from tests.models.reference_clip import image_feature, linear, normalised, text_feature

TOKENIZER = SimpleTokenizer()
SOS, EOT, PAD = TOKENIZER.encoder["<start_of_text>"], TOKENIZER.encoder["<end_of_text>"], 0


def word_ids(text: str) -> list[int]:
    return list(TOKENIZER.encode(text))


def name_ids(classname: str) -> list[int]:
    """A folder-style class name as CoOp reads it: underscores are spaces."""
    return word_ids(classname.replace("_", " "))


def prompt_tokens(
    clip: torch.nn.Module,
    context: Sequence[torch.Tensor],
    classname: str,
    position: str = "end",
    fixed_ids: Sequence[int] = (),
) -> tuple[list[torch.Tensor], int]:
    """The token vectors of one prompt, padded to the context length, and its EOT position.
    `fixed_ids` are init words beyond the learned context (MaPLe keeps "of a")."""
    vector = clip.token_embedding.weight
    ctx = list(context)
    name = [vector[i] for i in [*fixed_ids, *name_ids(classname)]]
    if position == "end":
        body = ctx + name
    elif position == "middle":
        half = len(ctx) // 2
        body = ctx[:half] + name + ctx[half:]
    elif position == "front":
        body = name + ctx
    else:
        raise ValueError(position)
    tokens = [vector[SOS], *body, *(vector[i] for i in word_ids(".")), vector[EOT]]
    eot = len(tokens) - 1
    tokens += [vector[PAD]] * (clip.positional_embedding.shape[0] - len(tokens))
    return tokens, eot


def class_features(
    clip: torch.nn.Module,
    ctx: torch.Tensor,
    classnames: Sequence[str],
    position: str = "end",
    fixed_ids: Sequence[int] = (),
    deep: dict[int, Sequence[torch.Tensor]] | None = None,
) -> torch.Tensor:
    """[C, D] normalised; ctx [n, W] shared or [C, n, W] one per class."""
    rows = []
    for c, classname in enumerate(classnames):
        context = ctx[c] if ctx.dim() == 3 else ctx
        tokens, eot = prompt_tokens(clip, context, classname, position, fixed_ids)
        rows.append(normalised(text_feature(clip, tokens, eot, deep)))
    return torch.stack(rows)


def stock_image_features(clip: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """[B, D] normalised features of the unprompted image tower, one image at a time."""
    return torch.stack([normalised(image_feature(clip, image)[0]) for image in images])


def scaled_cosines(clip: torch.nn.Module, image: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """[C] logits of one normalised image feature against [C, D] normalised class features."""
    scale = torch.exp(clip.logit_scale)
    return torch.stack([scale * (image * row).sum() for row in classes])


def coop_logits(clip: torch.nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    features = stock_image_features(clip, images)
    return torch.stack([scaled_cosines(clip, f, classes) for f in features])


def meta_shift(meta_net: torch.nn.Sequential, feature: torch.Tensor) -> torch.Tensor:
    """CoCoOp's pi = W2 relu(W1 f + b1) + b2 for one normalised image feature f [D] -> [W]."""
    hidden = torch.clamp(linear(feature, meta_net[0]), min=0)
    return linear(hidden, meta_net[2])


def shifted(ctx: torch.Tensor, shift: torch.Tensor) -> list[torch.Tensor]:
    """The same shift added to every context vector."""
    return [ctx[k] + shift for k in range(ctx.shape[0])]


def cocoop_logits(
    clip: torch.nn.Module,
    images: torch.Tensor,
    classnames: Sequence[str],
    ctx: torch.Tensor,
    meta_net: torch.nn.Sequential,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """([B, C] logits, per image its [C, D] class matrix), image by image."""
    logits, matrices = [], []
    for f in stock_image_features(clip, images):
        context = torch.stack(shifted(ctx, meta_shift(meta_net, f)))
        classes = class_features(clip, context, classnames)
        matrices.append(classes)
        logits.append(scaled_cosines(clip, f, classes))
    return torch.stack(logits), matrices
