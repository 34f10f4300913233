"""The plain CLIP towers the method references build on equal open_clip's own forward passes
(open_clip is the authority here; nothing of models/ is involved), on perturbed weights."""

from __future__ import annotations

import pytest
import torch

from models.backbone import Backbone
from tests.models.reference_clip import image_feature, text_feature

TOL = {"rtol": 1e-5, "atol": 1e-5}
pytestmark = pytest.mark.usefixtures("one_thread")


def test_plain_text_tower_equals_open_clip_encode_text(math_backbone: Backbone) -> None:
    clip, tokenizer = math_backbone.model, math_backbone.tokenizer
    ids = tokenizer(["a photo of a red fox.", "cat"])  # [2, L]
    with torch.no_grad():
        expected = clip.encode_text(ids)
        for row, target in zip(ids, expected, strict=True):
            tokens = [clip.token_embedding.weight[int(i)] for i in row]
            eot = int((row == tokenizer.eot_token_id).nonzero()[0])
            torch.testing.assert_close(text_feature(clip, tokens, eot), target, **TOL)


def test_plain_image_tower_equals_open_clip_encode_image(math_backbone: Backbone) -> None:
    clip = math_backbone.model
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = clip.encode_image(images)
        blocks = clip.visual.forward_intermediates(images, output_fmt="NLC", output_extra_tokens=True)
        for b, image in enumerate(images):
            feature, outputs = image_feature(clip, image)
            torch.testing.assert_close(feature, expected[b], **TOL)
            assert len(outputs) == len(clip.visual.transformer.resblocks) == 3
            last = torch.cat(
                [blocks["image_intermediates_prefix"][-1][b], blocks["image_intermediates"][-1][b]]
            )
            torch.testing.assert_close(outputs[-1], last, **TOL)
