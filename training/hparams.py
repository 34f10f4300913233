"""Training hyperparameters: Dassl's defaults, each method's published settings as DATA, and the
user's overrides on top. The loop never asks which method it trains; it reads a Hyperparameters.

Sources: methods.md §7 (the reference configs and scripts). Batch size and lr were tuned together
(CoCoOp bs 1, MaPLe/GOPro bs 4): when changing one, rescale or retune the other.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from models.prompts.base import DEFAULT_STAGE

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("cosine", "constant")


@dataclass(frozen=True)
class Hyperparameters:
    """Dassl defaults (dassl/config/defaults.py) as used by the CoOp family."""

    epochs: int = 200
    batch_size: int = 32  # global, over all processes
    optimizer: str = "sgd"
    lr: float = 0.002
    weight_decay: float = 5e-4  # applied to the prompts too, as Dassl does
    momentum: float = 0.9
    scheduler: str = "cosine"  # stepped once per epoch, like Dassl
    warmup_epochs: int = 1  # "constant" warmup: lr = warmup_lr for these epochs
    warmup_lr: float = 1e-5
    max_grad_norm: float | None = None  # the references do not clip; set it to clip the global norm
    augment: str = "rrc_flip"  # see training.data.transforms.AUGMENTATIONS
    rrc_scale: tuple[float, float] = (0.08, 1.0)

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
            # CoOp on real + synthetic features: plain SGD 2e-3, no momentum, no weight decay.
            # SHIP's code steps this cosine once per iteration; the one loop steps every schedule
            # once per epoch (Dassl). Over 200 epochs the two differ by at most base_lr * pi / 400
            # (0.8% of the base lr) within any epoch, so the loop keeps one schedule granularity.
            "classifier": {
                "optimizer": "sgd",
                "lr": 2e-3,
                "momentum": 0.0,
                "weight_decay": 0.0,
                "epochs": 200,
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
    stage: str = DEFAULT_STAGE,
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
    if hp.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {hp.optimizer!r}")
    if hp.scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {hp.scheduler!r}")
    if hp.epochs < 1 or hp.batch_size < 1 or hp.lr <= 0:
        raise ValueError("epochs and batch size must be >= 1 and lr > 0")
    if hp.warmup_epochs < 0 or hp.warmup_epochs > hp.epochs:
        raise ValueError(f"warmup_epochs must be in [0, epochs], got {hp.warmup_epochs}")
    return hp
