"""Export picks the image encoder by the learner's ClassVar, never by method name."""

from __future__ import annotations

from typing import ClassVar

from models.backbone import Backbone
from models.onnx_export import ImageEncoder
from models.prompts import CoOp, CoOpConfig
from training.export import image_encoder_of


class PromptedImageCoOp(CoOp):
    """Stands in for MaPLe: a learner whose image side is its own."""

    method = "prompted-image-test"
    custom_image_encoder: ClassVar[bool] = True


def test_custom_image_encoders_export_the_learners_own_forward(tiny_backbone: Backbone) -> None:
    stock = image_encoder_of(CoOp(tiny_backbone, ["a", "b"], CoOpConfig(n_ctx=2)))
    assert isinstance(stock, ImageEncoder) and stock.encode is tiny_backbone.model.visual
    custom = PromptedImageCoOp(tiny_backbone, ["a", "b"], CoOpConfig(n_ctx=2))
    assert image_encoder_of(custom) == custom.image_embeddings
