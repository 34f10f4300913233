"""The world's training pool rendered once for the pretraining tests (64 samples, tiny CLIP)."""

from __future__ import annotations

import pytest
import torch

from models.backbone import build_backbone
from training.pretrain.pool import Pool, render_pool
from training.world import World

TINY = "clipserve-tiny-vit"


@pytest.fixture(scope="session")
def pool() -> Pool:
    torch.set_num_threads(1)
    return render_pool(World(), build_backbone(TINY, None), "train", 64)
