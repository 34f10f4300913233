"""One optimiser builder and one learning-rate schedule for both loops, each compared with a plain
restatement of what the references do: Dassl's constant warmup then cosine per epoch (CoOp
family), and a linear warmup then cosine to zero per step (open_clip, ProtoCLIP)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.training.pretrain.test_pretrain import tiny_config
from training.hparams import resolve
from training.optim import OptimizerSpec, Schedule, build_optimizer, epoch_schedule, set_learning_rate
from training.pretrain.steps import learning_rate as pretrain_lr
from training.pretrain.steps import param_groups


def test_dassl_per_epoch_schedule() -> None:
    hp = resolve("coop", overrides={"epochs": 7, "warmup_epochs": 2, "lr": 0.01, "warmup_lr": 1e-4})
    expected = [1e-4, 1e-4] + [0.01 * (1 + math.cos(math.pi * (e - 2) / 7)) / 2 for e in range(2, 7)]
    assert [epoch_schedule(hp).at(e) for e in range(7)] == pytest.approx(expected)


def test_linear_warmup_then_cosine_to_zero_per_step() -> None:
    config = tiny_config(lr=0.1, warmup_fraction=0.25, episodes=2)  # 8 steps, 2 of warmup
    total, warmup = config.total_steps, 2
    expected = []
    for step in range(total):
        if step < warmup:
            expected.append(0.1 * (step + 1) / warmup)
        else:
            expected.append(0.1 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup))))
    assert [pretrain_lr(config, s) for s in range(total)] == pytest.approx(expected)
    assert Schedule(0.1, 10, decay="constant").at(9) == 0.1


def test_one_builder_for_both_loops() -> None:
    prompt = nn.Parameter(torch.zeros(4, 8))
    sgd = build_optimizer([prompt], OptimizerSpec("sgd", 0.002, 5e-4, momentum=0.9))
    assert isinstance(sgd, torch.optim.SGD) and len(sgd.param_groups) == 1
    assert (sgd.param_groups[0]["weight_decay"], sgd.param_groups[0]["momentum"]) == (5e-4, 0.9)
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    config = tiny_config(weight_decay=0.3)
    visual = {id(p) for p in model[0].parameters()}
    adamw = build_optimizer(
        param_groups(model, config, visual), OptimizerSpec("adamw", 1e-3, 0.3, betas=(0.9, 0.98))
    )
    decays = sorted((g["visual"], g["weight_decay"], len(g["params"])) for g in adamw.param_groups)
    assert decays == [(False, 0.0, 2), (True, 0.0, 1), (True, 0.3, 1)]  # only the weight matrix decays
    set_learning_rate(adamw, 0.5, frozen="visual")
    assert sorted(g["lr"] for g in adamw.param_groups) == [0.0, 0.0, 0.5]
    with pytest.raises(ValueError, match="no trainable tensors"):
        build_optimizer([], OptimizerSpec("sgd", 0.1, 0.0))
