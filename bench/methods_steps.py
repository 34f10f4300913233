"""How many optimizer steps the written-down settings give each method (no result involved):
epochs from bench/methods_settings.py on top of training/hparams.py, and batches per epoch as the
loop forms them (training/data/batches.py: the last incomplete batch is dropped when the set holds
a full one)."""

from __future__ import annotations

from bench.methods_settings import FULL, METHOD_SETTINGS, method_hparams
from training.hparams import resolve

SHOT_COLUMNS = (1, 2, 4, 8, 16)
# (row label, settings key, classes trained on, shots it runs at)
RUNS = (
    ("CoOp (few-shot, all 64)", "coop", 64, SHOT_COLUMNS),
    ("MaPLe (few-shot, all 64)", "maple", 64, SHOT_COLUMNS),
    ("CoCoOp (all 64)", "cocoop", 64, (16,)),
    ("GOPro (all 64)", "gopro", 64, (16,)),
    ("CoOp (base-to-new, 32)", "coop-b2n", 32, (16,)),
    ("CoCoOp (base-to-new, 32)", "cocoop", 32, (16,)),
    ("MaPLe (base-to-new, 32)", "maple", 32, (16,)),
    ("GOPro (base-to-new, 32)", "gopro", 32, (16,)),
    ("SHIP, per stage (base-to-new, 32)", "ship", 32, (16,)),
)


def batches_per_epoch(images: int, batch_size: int) -> int:
    return max(1, images // batch_size) if images >= batch_size else 1


def steps(key: str, classes: int, shots: int) -> int:
    method = METHOD_SETTINGS[key]["method"]
    hp = resolve(method, shots, method_hparams(key, FULL, shots))
    return batches_per_epoch(classes * shots, hp.batch_size) * hp.epochs


def optimizer_steps() -> dict[str, list[str]]:
    return {
        label: [str(steps(key, classes, k)) if k in shots else "-" for k in SHOT_COLUMNS]
        for label, key, classes, shots in RUNS
    }
