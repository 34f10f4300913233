"""MaPLe (Khattak et al., CVPR'23) restated plainly: coupled prompts in the first J blocks.

Text: [SOS] [ctx_1 .. ctx_n] ["of" "a"] [class] [.] [EOT], the n learned vectors starting from the
first n tokens of "a photo of a"; before text block j (1 <= j < J) tokens 1..n are replaced by the
deep text prompt P_t^j. Vision: P_v^0 = F_0(ctx) (one vector per context vector) appended after
the patch tokens with no positional embedding, before ln_pre; before vision block j (1 <= j < J)
the last n tokens are replaced by P_v^j = F_j(P_t^j), the coupling of THAT block's text prompt.
The image feature is ln_post of the class token, projected.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tests.models.prompts.reference_coop import class_features, word_ids
from tests.models.reference_clip import image_feature, linear, normalised

INIT = "a photo of a"


def deep_text_prompts(deep_text: Sequence[torch.Tensor]) -> dict[int, list[torch.Tensor]]:
    """{block j: its n text prompt vectors} for j = 1 .. J-1 (deep_text[j - 1] is P_t^j)."""
    return {j: list(deep_text[j - 1]) for j in range(1, len(deep_text) + 1)}


def maple_class_features(
    clip: torch.nn.Module, ctx: torch.Tensor, deep_text: Sequence[torch.Tensor], classnames: Sequence[str]
) -> torch.Tensor:
    fixed = word_ids(INIT)[ctx.shape[0] :]  # the init words the context does not replace
    return class_features(clip, ctx, classnames, fixed_ids=fixed, deep=deep_text_prompts(deep_text))


def maple_image_features(
    clip: torch.nn.Module,
    images: torch.Tensor,
    ctx: torch.Tensor,
    first: torch.nn.Linear,
    deep_text: Sequence[torch.Tensor],
    deep_couplings: Sequence[torch.nn.Linear],
) -> torch.Tensor:
    """[B, D] normalised, image by image through the prompted vision tower."""
    appended = [linear(vector, first) for vector in ctx]
    tail = {
        j: [linear(vector, deep_couplings[j - 1]) for vector in prompt]
        for j, prompt in deep_text_prompts(deep_text).items()
    }
    return torch.stack([normalised(image_feature(clip, image, appended, tail)[0]) for image in images])
