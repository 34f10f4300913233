"""Mixed precision: learned tensors stay fp32 while the frozen towers run in bf16."""

from __future__ import annotations

import pytest
import torch

from models.backbone import Backbone
from tests.models.prompts.helpers import STAGE_CASES, make_batch, make_learner, seeded_loss


def _assert_fp32_grads(learner: torch.nn.Module) -> None:
    for name, parameter in learner.named_parameters():
        assert parameter.dtype == torch.float32, name
        if parameter.grad is not None:
            assert parameter.grad.dtype == torch.float32 and torch.isfinite(parameter.grad).all(), name


@pytest.mark.parametrize(("name", "stage"), STAGE_CASES)
def test_bf16_backbone_forward_and_backward(name: str, stage: str, tiny_bf16_backbone: Backbone) -> None:
    learner = make_learner(name, tiny_bf16_backbone).train()
    learner.set_stage(stage)
    loss = seeded_loss(learner, make_batch(learner))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None for p in learner.parameters())
    _assert_fp32_grads(learner)
    assert all(p.grad is None for p in tiny_bf16_backbone.model.parameters())


@pytest.mark.parametrize(("name", "stage"), STAGE_CASES)
def test_fp32_backbone_under_bf16_autocast(name: str, stage: str, tiny_backbone: Backbone) -> None:
    learner = make_learner(name, tiny_backbone).train()
    learner.set_stage(stage)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = seeded_loss(learner, make_batch(learner))
    assert torch.isfinite(loss)
    loss.backward()
    _assert_fp32_grads(learner)
