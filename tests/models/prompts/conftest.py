from __future__ import annotations

import pytest

from models.backbone import Backbone, build_backbone
from tests.conftest import TINY_ARCH, TINY_SEED


@pytest.fixture(scope="session")
def tiny_bf16_backbone() -> Backbone:
    """The tiny ViT with bf16 weights and fp32 layer norms (open_clip's precision='bf16')."""
    return build_backbone(TINY_ARCH, pretrained=None, precision="bf16", seed=TINY_SEED)
