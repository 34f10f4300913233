"""How many optimizer steps the schedule rule of bench/methods_settings.py gives each run (no
result involved), beside what the first full run's rule gave (commit 7ae122f)."""

from __future__ import annotations

from bench.methods_settings import planned_steps

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
    ("SHIP, VAE stage (base-to-new, 32)", "ship", 32, (16,)),
    ("SHIP, CoOp stage (base-to-new, 32)", "ship", 32, (16,)),
)
# The first full run's steps per seed (its rule: each method's epochs divided by one factor at
# every K; its warmup epoch, at lr 1e-5, is counted), as its report printed them.
FIRST_RUN = {
    "CoOp (few-shot, all 64)": (12, 48, 96, 400, 800),
    "MaPLe (few-shot, all 64)": (80, 160, 320, 640, 1280),
    "CoCoOp (all 64)": (2048,),
    "GOPro (all 64)": (512,),
    "CoOp (base-to-new, 32)": (400,),
    "CoCoOp (base-to-new, 32)": (1024,),
    "MaPLe (base-to-new, 32)": (640,),
    "GOPro (base-to-new, 32)": (256,),
    "SHIP, VAE stage (base-to-new, 32)": (50,),
    "SHIP, CoOp stage (base-to-new, 32)": (50,),
}


def steps(label: str, key: str, classes: int, shots: int) -> int:
    per_stage = planned_steps(key, classes, shots)
    if key == "ship":
        return per_stage["generator" if "VAE" in label else "classifier"]
    return sum(per_stage.values())


def optimizer_steps() -> dict[str, list[str]]:
    """Per run and K: 'first run -> this rule' steps per seed."""
    table = {}
    for label, key, classes, shots in RUNS:
        before = dict(zip(shots, FIRST_RUN[label], strict=True))
        table[label] = [
            f"{before[k]} -> {steps(label, key, classes, k)}" if k in shots else "-" for k in SHOT_COLUMNS
        ]
    return table
