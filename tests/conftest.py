"""Shared fixtures: a tiny random CLIP (fixed seed, no downloads) and the `gpu` marker."""

from __future__ import annotations

import logging

import pytest
import torch

from models.backbone import Backbone, build_backbone

TINY_ARCH = "clipserve-tiny-vit"
TINY_SEED = 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is available here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _quiet_open_clip_random_init_warning(caplog: pytest.LogCaptureFixture) -> None:
    # open_clip warns on every random init; tests build random models on purpose.
    caplog.set_level(logging.ERROR, logger="root")


@pytest.fixture(scope="session")
def tiny_backbone() -> Backbone:
    """A ~3.4M-parameter ViT CLIP with random weights; shared, so tests must not mutate it."""
    return build_backbone(TINY_ARCH, pretrained=None, seed=TINY_SEED)


@pytest.fixture(scope="session")
def tiny_rn_backbone() -> Backbone:
    return build_backbone("clipserve-tiny-rn", pretrained=None, seed=TINY_SEED)
