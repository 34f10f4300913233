"""Per-method defaults as data, overrides, and Dassl's per-epoch schedule."""

from __future__ import annotations

import math

import pytest

from training.hparams import resolve
from training.optim import learning_rate, step_schedule


def test_coop_defaults_follow_the_published_configs() -> None:
    hp = resolve("coop", shots=16)
    assert (hp.optimizer, hp.lr, hp.batch_size, hp.epochs) == ("sgd", 0.002, 32, 200)
    assert (hp.momentum, hp.weight_decay, hp.warmup_epochs, hp.warmup_lr) == (0.9, 5e-4, 1, 1e-5)
    assert hp.augment == "rrc_flip" and hp.rrc_scale == (0.08, 1.0)
    assert resolve("coop", shots=1).epochs == 50
    assert resolve("coop", shots=4).epochs == 100


def test_other_methods_and_overrides() -> None:
    assert (resolve("maple").lr, resolve("maple").batch_size, resolve("maple").epochs) == (0.0035, 4, 5)
    assert resolve("cocoop").batch_size == 1
    assert resolve("ship", stage="generator").optimizer == "adamw"
    assert resolve("ship", stage="classifier").momentum == 0.0
    hp = resolve("coop", 16, {"lr": 0.01, "epochs": None, "rrc_scale": [0.5, 1]})
    assert hp.lr == 0.01 and hp.epochs == 200 and hp.rrc_scale == (0.5, 1.0)
    assert resolve("a-new-method").lr == 0.002  # no table entry: Dassl's defaults
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        resolve("coop", overrides={"lrr": 1})
    with pytest.raises(ValueError, match="optimizer"):
        resolve("coop", overrides={"optimizer": "lion"})


def test_constant_warmup_then_cosine_per_epoch_like_dassl() -> None:
    hp = resolve("coop", overrides={"epochs": 10})
    assert learning_rate(hp, 0) == 1e-5
    assert learning_rate(hp, 1) == pytest.approx(0.002)  # cosine starts at the base lr after warmup
    assert learning_rate(hp, 6) == pytest.approx(0.002 * (1 + math.cos(math.pi * 5 / 10)) / 2)
    constant = resolve("coop", overrides={"scheduler": "constant", "warmup_epochs": 0})
    assert learning_rate(constant, 7) == 0.002


def test_ships_coop_stage_steps_its_cosine_every_iteration() -> None:
    assert resolve("ship", stage="classifier").schedule_unit == "step"
    assert resolve("ship", stage="generator").schedule_unit == resolve("coop").schedule_unit == "epoch"
    hp = resolve("ship", stage="classifier", overrides={"epochs": 3})
    schedule = step_schedule(hp, steps_per_epoch=4)  # CosineAnnealingLR(T_max=12), stepped per iteration
    assert [schedule.at(t) for t in range(12)] == pytest.approx(
        [0.002 * (1 + math.cos(math.pi * t / 12)) / 2 for t in range(12)]
    )
