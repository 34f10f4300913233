"""The resumable training state, written atomically at the end of every epoch.

Holds the learner's tensors, the optimiser state (momentum buffers), where to continue (stage
and epoch) and a fingerprint of everything that defines the run. No RNG state is needed: all
randomness is derived from (seed, epoch, index) (training/data/batches.py). Loaded with
`weights_only=True`, so a state file cannot execute code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"
STATE_VERSION = 1


class StateMismatchError(ValueError):
    """A state file from a different run configuration; resuming it would silently mix runs."""


def fingerprint(run: dict[str, Any]) -> str:
    """A digest of what defines the run (method, configs, data, seed, backbone)."""
    return hashlib.sha256(json.dumps(run, sort_keys=True, default=str).encode()).hexdigest()


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Temp file + fsync + rename: a kill at any moment leaves the previous epoch's state."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save({"version": STATE_VERSION, **state}, temp)
        with temp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def load_state(path: Path, expected_fingerprint: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("version") != STATE_VERSION:
        raise StateMismatchError(f"{path}: state version {state.get('version')!r} is not {STATE_VERSION}")
    if state.get("fingerprint") != expected_fingerprint:
        raise StateMismatchError(
            f"{path} belongs to a run with different settings (method, data, hyperparameters, seed "
            f"or backbone); use a new --out directory, or --no-resume to start this one over"
        )
    return state
