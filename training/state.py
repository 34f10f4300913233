"""The resumable state of a run, one record for both loops (`clipserve train` counts epochs,
`clipserve pretrain` episodes), written atomically after every epoch (episode).

It holds the trained tensors, the optimiser state (momentum buffers), where to continue (stage and
units completed), the plan (units per stage) it was saved under, the optimiser steps so far, the
last finished unit's mean loss, and, when validation runs, the best validation score with its
tensors. No RNG state is needed: all randomness is derived from (seed, epoch, index)
(training/data/batches.py). Loaded with `weights_only=True`, so a state file cannot execute code.

A state matches a run when the fingerprint of everything that defines the result, except the
number of epochs (episodes), is equal: a finished run given more epochs continues, its schedule
re-planned over the new total (`resume_point`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"
STATE_VERSION = 2


class StateMismatchError(ValueError):
    """A state file from a different run configuration; resuming it would silently mix runs."""


@dataclass
class Best:
    """The best validation score so far, where it was reached, and the tensors it was reached with."""

    score: float
    stage_index: int
    completed: int  # units of that stage finished when it was scored
    tensors: dict[str, torch.Tensor]


@dataclass
class RunState:
    fingerprint: str
    unit: str  # "epoch" | "episode"
    stage_index: int
    completed: int  # units of stage `stage_index` finished
    planned: list[int]  # units per stage in the plan this state was saved under
    global_step: int  # optimiser steps (global batches) of the whole run so far
    last_loss: float  # mean loss of the last finished unit
    tensors: dict[str, torch.Tensor]  # the learner's (or model's) state dict
    optimizer: dict[str, Any]
    best: Best | None = None
    last_score: float | None = None  # validation score of the last finished unit, when it was scored


@dataclass(frozen=True)
class ResumePoint:
    stage_index: int
    completed: int
    notes: tuple[str, ...] = ()  # what changed since the state was saved, for the log

    def is_complete(self, planned: list[int]) -> bool:
        return self.stage_index == len(planned) - 1 and self.completed >= planned[-1]


def fingerprint(run: dict[str, Any]) -> str:
    """A digest of what defines the run (method, configs, data, seed, backbone)."""
    return hashlib.sha256(json.dumps(run, sort_keys=True, default=str).encode()).hexdigest()


def save_state(path: Path, state: RunState) -> None:
    """Temp file + fsync + rename: a kill at any moment leaves the previous epoch's state."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # vars(), not asdict(): asdict deep-copies every tensor and the optimiser state.
        best = vars(state.best) if state.best is not None else None
        torch.save({"version": STATE_VERSION, **vars(state), "best": best}, temp)
        with temp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def load_state(path: Path, expected_fingerprint: str) -> RunState | None:
    if not path.is_file():
        return None
    data = torch.load(path, map_location="cpu", weights_only=True)
    if data.get("version") != STATE_VERSION:
        raise StateMismatchError(
            f"{path}: state version {data.get('version')!r} is not {STATE_VERSION} (written by an "
            f"older clipserve); start over with --no-resume or use a new --out directory"
        )
    if data.get("fingerprint") != expected_fingerprint:
        raise StateMismatchError(
            f"{path} belongs to a run with different settings (method, data, hyperparameters other "
            f"than the epochs, seed or backbone); use a new --out directory, or --no-resume to "
            f"start this one over"
        )
    del data["version"]
    best = data.pop("best")
    return RunState(**data, best=Best(**best) if best is not None else None)


def resume_point(state: RunState | None, planned: list[int], stages: list[str]) -> ResumePoint:
    """Where a run continues under the plan `planned` (units per stage), given its saved state.

    The stage in progress may grow or shrink down to what it finished; stages already finished
    are not re-run, whatever their planned length now."""
    if state is None:
        return ResumePoint(0, 0)
    index, done, unit = state.stage_index, state.completed, state.unit
    where = f" of stage {stages[index]!r}" if len(stages) > 1 else ""
    if planned[index] < done:
        raise StateMismatchError(
            f"this run has finished {done} {unit}s{where}; {planned[index]} is fewer. A run cannot "
            f"shrink: use --no-resume to start over, or a new --out directory"
        )
    notes = [
        f"stage {stages[i]!r} finished with {state.planned[i]} {unit}s and is not re-run"
        for i in range(index)
        if planned[i] != state.planned[i]
    ]
    if planned[index] != state.planned[index]:
        notes.append(
            f"re-planned from {state.planned[index]} to {planned[index]} {unit}s{where} after {done} "
            f"finished: the learning-rate schedule follows the new plan from {unit} {done + 1} on"
        )
    if done >= planned[index] and index + 1 < len(planned):
        return ResumePoint(index + 1, 0, tuple(notes))
    return ResumePoint(index, done, tuple(notes))
