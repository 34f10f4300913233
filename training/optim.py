"""The optimiser and the learning-rate schedule: one of each, for both loops.

- `build_optimizer`: SGD with momentum (Dassl) or AdamW over torch parameter groups; a group may
  carry its own weight decay (pretraining leaves gains, biases and temperatures undecayed).
- `Schedule`: a warmup (constant at `warmup_lr`, Dassl's ConstantWarmupScheduler; or a linear ramp
  to the base lr, open_clip/ProtoCLIP), then cosine decay or a constant lr. Prompt learning steps
  it once per epoch (or, with `schedule_unit="step"`, evaluates the same curve every step),
  pretraining once per step. It is a pure function of the position (no scheduler object with
  hidden state), so resuming needs nothing but the position, and a run re-planned to more epochs
  follows the new plan from where it stands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from training.hparams import Hyperparameters


@dataclass(frozen=True)
class OptimizerSpec:
    kind: str  # "sgd" | "adamw"
    lr: float
    weight_decay: float  # for groups that do not set their own
    momentum: float = 0.9  # SGD
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW (torch's defaults)
    eps: float = 1e-8  # AdamW


def build_optimizer(
    groups: list[dict[str, Any]] | list[nn.Parameter], spec: OptimizerSpec
) -> torch.optim.Optimizer:
    """`groups`: parameters, or torch param groups ({"params": [...], other keys kept})."""
    dicts = [g for g in groups if isinstance(g, dict)]
    param_groups = dicts if dicts else [{"params": list(groups)}]
    if not any(len(g["params"]) for g in param_groups):
        raise ValueError("nothing to train: no trainable tensors")
    if spec.kind == "adamw":
        return torch.optim.AdamW(
            param_groups, lr=spec.lr, weight_decay=spec.weight_decay, betas=spec.betas, eps=spec.eps
        )
    if spec.kind == "sgd":
        return torch.optim.SGD(
            param_groups, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay
        )
    raise ValueError(f"optimizer must be sgd or adamw, got {spec.kind!r}")


def optimizer_spec(hp: Hyperparameters) -> OptimizerSpec:
    return OptimizerSpec(hp.optimizer, hp.lr, hp.weight_decay, hp.momentum)


@dataclass(frozen=True)
class Schedule:
    lr: float  # the base (peak) learning rate
    total: int  # positions in the plan: epochs, or steps
    warmup: int = 0  # positions of warmup
    warmup_lr: float | None = None  # constant warmup at this lr (Dassl); None: linear ramp to `lr`
    decay: str = "cosine"  # "cosine" | "constant"
    period: int | None = None  # positions over which the cosine falls to zero; None: total - warmup

    def at(self, position: int) -> float:
        if position < self.warmup:
            if self.warmup_lr is not None:
                return self.warmup_lr
            return self.lr * (position + 1) / self.warmup
        if self.decay == "constant":
            return self.lr
        period = self.period if self.period is not None else max(1, self.total - self.warmup)
        progress = min(1.0, (position - self.warmup) / period)
        return self.lr * 0.5 * (1 + math.cos(math.pi * progress))


def epoch_schedule(hp: Hyperparameters) -> Schedule:
    """Dassl's ConstantWarmupScheduler around CosineAnnealingLR(T_max=epochs), stepped per epoch:
    warmup_lr during warmup, then base * (1 + cos(pi * (epoch - warmup) / epochs)) / 2. (The
    period is all the epochs, warmup included, as Dassl's, so the lr never quite reaches zero.)"""
    return Schedule(hp.lr, hp.epochs, hp.warmup_epochs, hp.warmup_lr, hp.scheduler, period=hp.epochs)


def step_schedule(hp: Hyperparameters, steps_per_epoch: int) -> Schedule:
    """The epoch schedule's curve over steps, for `schedule_unit="step"`: position = epoch *
    steps_per_epoch + step, so the cosine falls a little every step (SHIP's CoOp stage:
    CosineAnnealingLR(T_max = all iterations), stepped every iteration)."""
    n = max(1, steps_per_epoch)
    total = hp.epochs * n
    return Schedule(hp.lr, total, hp.warmup_epochs * n, hp.warmup_lr, hp.scheduler, period=total)


def learning_rate(hp: Hyperparameters, epoch: int) -> float:
    return epoch_schedule(hp).at(epoch)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float, frozen: str | None = None) -> None:
    """Set every group's lr; groups whose key `frozen` is true get 0 (pretraining's LiT phase)."""
    for group in optimizer.param_groups:
        group["lr"] = 0.0 if frozen is not None and group.get(frozen) else lr
