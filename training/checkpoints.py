"""Finding checkpoints: a file, or a run directory (one checkpoint, or one per seed_* folder)."""

from __future__ import annotations

from pathlib import Path

from training.metrics import METRICS_FILE

CHECKPOINT_FILE = "checkpoint.safetensors"
SEED_DIR_PREFIX = "seed_"


def find_checkpoints(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(path)
        elif (path / CHECKPOINT_FILE).is_file():
            found.append(path / CHECKPOINT_FILE)
        elif path.is_dir() and sorted(path.glob(f"{SEED_DIR_PREFIX}*/{CHECKPOINT_FILE}")):
            found.extend(sorted(path.glob(f"{SEED_DIR_PREFIX}*/{CHECKPOINT_FILE}")))
        else:
            raise FileNotFoundError(f"{path}: neither a checkpoint file nor a run directory holding one")
    return found


def metrics_beside(checkpoint: Path) -> Path | None:
    """The training metrics of the run that wrote `checkpoint`, if they are still next to it."""
    path = checkpoint.parent / METRICS_FILE
    return path if path.is_file() else None
