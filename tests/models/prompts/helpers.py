"""Building blocks for the prompt-learner tests: tiny-sized configs, images, batches, steps.

Configs only shrink what the tiny backbone cannot hold (MaPLe's depth 9 > its 2 blocks) or what
would make the tests slow (SHIP's 2048/4096-wide VAE); every method is built from METHODS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from models.backbone import Backbone
from models.prompts import METHODS, Batch, LearnerConfig, PromptLearner

MANY_CLASSES = ["cat", "dog", "golden_retriever", "airplane", "red fox"]
ONE_CLASS = ["cat"]
TINY_OVERRIDES: dict[str, dict[str, Any]] = {
    "maple": {"prompt_depth": 2},
    "ship": {"encoder_hidden": 32, "generator_hidden": 32},
}
# (method, stage) for every training stage of every method.
STAGE_CASES = [(name, stage) for name, cls in METHODS.items() for stage in cls.training_stages]


def tiny_config(name: str, classnames: Sequence[str], **overrides: Any) -> LearnerConfig:
    fields = dict(TINY_OVERRIDES.get(name, {}))
    if name == "ship" and len(classnames) > 1:
        fields["label_only_classes"] = [classnames[-1]]  # the last class has no images
    fields.update(overrides)
    return METHODS[name].config_class(**fields)


def make_learner(
    name: str, backbone: Backbone, classnames: Sequence[str] = MANY_CLASSES, seed: int = 0, **overrides: Any
) -> PromptLearner:
    torch.manual_seed(seed)
    return METHODS[name](backbone, classnames, tiny_config(name, classnames, **overrides))


def make_images(backbone: Backbone, count: int, seed: int) -> torch.Tensor:
    size = backbone.preprocessing.image_size
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 3, size, size, generator=generator)  # [B, 3, H, W]


def make_batch(learner: PromptLearner, count: int = 4, seed: int = 0) -> Batch:
    """Images, the views the method asks for, and labels of classes that have images."""
    with_images = len(learner.classnames) - len(getattr(learner.config, "label_only_classes", []))
    labels = torch.arange(count) % with_images
    views = {
        name: make_images(learner.backbone, count, seed + 1 + i) for i, name in enumerate(learner.extra_views)
    }
    return Batch(labels=labels, images=make_images(learner.backbone, count, seed), views=views)


def seeded_loss(learner: PromptLearner, batch: Batch, seed: int = 0) -> torch.Tensor:
    """The loss with the global RNG fixed, so stochastic terms (SHIP's sampling) repeat."""
    torch.manual_seed(seed)
    return learner.loss(batch)


def train_step(learner: PromptLearner, batch: Batch, lr: float = 1e-3) -> None:
    optimiser = torch.optim.Adam(learner.trainable_parameters(), lr=lr)
    optimiser.zero_grad()
    seeded_loss(learner, batch).backward()
    optimiser.step()


def perturbed(learner: PromptLearner, scale: float = 0.05, seed: int = 1) -> PromptLearner:
    """Move every learned tensor away from its init (a zero-init layer would hide bugs)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in learner.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
    return learner
