"""Training hyperparameters: Dassl's defaults, each method's published settings as DATA, and the
user's overrides on top. The loop never asks which method it trains; it reads a Hyperparameters.
Each field is also a `clipserve train` option (training/options.py); no torch import here.

Sources: methods.md §7 (the reference configs and scripts). Batch size and lr were tuned together
(CoCoOp bs 1, MaPLe/GOPro bs 4): when changing one, rescale or retune the other.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, get_args

from training.options import option

log = logging.getLogger(__name__)

Optimizer = Literal["sgd", "adamw"]
Scheduler = Literal["cosine", "constant"]
Augmentation = Literal["rrc_flip", "flip", "none"]
ScheduleUnit = Literal["epoch", "step"]
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
SCHEDULERS: tuple[str, ...] = get_args(Scheduler)
AUGMENTATIONS: tuple[str, ...] = get_args(Augmentation)
SCHEDULE_UNITS: tuple[str, ...] = get_args(ScheduleUnit)


@dataclass(frozen=True)
class Hyperparameters:
    """Dassl defaults (dassl/config/defaults.py) as used by the CoOp family."""

    epochs: int = option(
        "training epochs (CoOp: 50/100/100/200/200 for 1/2/4/8/16 shots; use 50 for ImageNet). A "
        "finished run given more epochs continues from its state",
        200,
    )
    batch_size: int = option("GLOBAL batch size, split over processes", 32)
    optimizer: Optimizer = option("sgd (momentum, Dassl) or adamw", "sgd")
    lr: float = option("base learning rate (CoOp 0.002, MaPLe 0.0035)", 0.002)
    weight_decay: float = option("weight decay, applied to the prompts too, as Dassl does (5e-4)", 5e-4)
    momentum: float = option("SGD momentum (0.9)", 0.9)
    scheduler: Scheduler = option(
        "per-epoch lr schedule after warmup, stepped once per epoch (cosine)", "cosine"
    )
    schedule_unit: ScheduleUnit = option(
        "epoch: the lr changes once per epoch (Dassl); step: the same curve, evaluated every step "
        "(SHIP's CoOp stage)",
        "epoch",
    )
    warmup_epochs: int = option("epochs at the constant warmup lr (1)", 1)
    warmup_lr: float = option("the constant warmup lr (1e-5)", 1e-5)
    max_grad_norm: float | None = option(
        "clip the global gradient norm to this (off by default, as in the reference code)", None
    )
    augment: Augmentation = option(
        "rrc_flip: random resized crop + flip (Dassl); flip: flip only; none: eval preprocessing, "
        "and stock image features are then computed once and cached when the method allows",
        "rrc_flip",
    )
    rrc_scale: tuple[float, float] = option(
        "random-resized-crop area range (0.08 1.0)", (0.08, 1.0), metavar=("MIN", "MAX")
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# method -> overrides of the defaults. "epochs_by_shots" is CoOp's schedule per K (ImageNet uses
# 50 for every K: pass --epochs 50). "stages" holds per-stage overrides for multi-stage methods.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "coop": {"epochs": 200, "batch_size": 32, "lr": 0.002, "epochs_by_shots": {1: 50, 2: 100, 4: 100}},
    "cocoop": {"epochs": 10, "batch_size": 1, "lr": 0.002},
    "maple": {"epochs": 5, "batch_size": 4, "lr": 0.0035},
    "gopro": {"epochs": 50, "batch_size": 4, "lr": 0.002},
    "ship": {
        "stages": {
            # The VAE (encoder, generator, prompt): AdamW 1e-3 on features of RRC(0.5, 1) crops.
            "generator": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01, "epochs": 50},
            # CoOp on real + synthetic features: plain SGD 2e-3, no momentum, no weight decay,
            # cosine over all iterations stepped every iteration (SHIP's CosineAnnealingLR).
            "classifier": {
                "optimizer": "sgd",
                "lr": 2e-3,
                "momentum": 0.0,
                "weight_decay": 0.0,
                "epochs": 200,
                "schedule_unit": "step",
            },
        },
        "batch_size": 256,
        "warmup_epochs": 0,
        "rrc_scale": (0.5, 1.0),
    },
}


def resolve(
    method: str,
    shots: int | None = None,
    overrides: dict[str, Any] | None = None,
    stage: str | None = None,
) -> Hyperparameters:
    """Dassl defaults < the method's table entry < its stage's entry < the user's overrides."""
    table = METHOD_DEFAULTS.get(method)
    if table is None:
        log.warning("no published defaults for method %r; using Dassl's", method)
        table = {}
    values: dict[str, Any] = {k: v for k, v in table.items() if k not in ("epochs_by_shots", "stages")}
    if shots is not None and shots in table.get("epochs_by_shots", {}):
        values["epochs"] = table["epochs_by_shots"][shots]
    values.update(table.get("stages", {}).get(stage, {}))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return validate(replace(Hyperparameters(), **_known(values)))


def _known(values: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(Hyperparameters)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown hyperparameters {unknown}; known: {sorted(names)}")
    if "rrc_scale" in values:
        values["rrc_scale"] = tuple(float(v) for v in values["rrc_scale"])
    return values


def validate(hp: Hyperparameters) -> Hyperparameters:
    if hp.augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {hp.augment!r}")
    if hp.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {hp.optimizer!r}")
    if hp.scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {hp.scheduler!r}")
    if hp.schedule_unit not in SCHEDULE_UNITS:
        raise ValueError(f"schedule_unit must be one of {SCHEDULE_UNITS}, got {hp.schedule_unit!r}")
    if hp.epochs < 1 or hp.batch_size < 1 or hp.lr <= 0:
        raise ValueError("epochs and batch size must be >= 1 and lr > 0")
    if hp.warmup_epochs < 0 or hp.warmup_epochs > hp.epochs:
        raise ValueError(f"warmup_epochs must be in [0, epochs], got {hp.warmup_epochs}")
    return hp
