"""Optimiser over the learnable tensors only, and the per-epoch learning rate.

The schedule is a pure function of the epoch (no scheduler object with hidden state), so resuming
needs nothing but the epoch number.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from training.hparams import Hyperparameters


def build_optimizer(params: list[nn.Parameter], hp: Hyperparameters) -> torch.optim.Optimizer:
    if not params:
        raise ValueError("the learner has no trainable tensors")
    if hp.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
    return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)


def learning_rate(hp: Hyperparameters, epoch: int) -> float:
    """Dassl's ConstantWarmupScheduler around CosineAnnealingLR(T_max=epochs), stepped per epoch:
    warmup_lr during warmup, then base * (1 + cos(pi * (epoch - warmup) / epochs)) / 2."""
    if epoch < hp.warmup_epochs:
        return hp.warmup_lr
    if hp.scheduler == "constant":
        return hp.lr
    return hp.lr * (1 + math.cos(math.pi * (epoch - hp.warmup_epochs) / hp.epochs)) / 2


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
