"""Where a run reports, for both loops, on the main process only: metrics.jsonl always
(training/metrics.py), TensorBoard event files when asked (torch.utils.tensorboard, which needs
the `tensorboard` package: the `train` extra).

TensorBoard's x axis is the optimiser step of the whole run. A resumed run purges the events from
its resume step on (SummaryWriter's purge_step), as it drops the cut-short records of
metrics.jsonl, so neither shows an epoch twice; a run that starts over purges everything.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from training.metrics import METRICS_FILE, MetricsLog
from training.state import ResumePoint, RunState

log = logging.getLogger(__name__)

TENSORBOARD_MISSING = (
    "--tensorboard needs the tensorboard package, which is not installed: "
    "pip install tensorboard (it is part of clipserve's `train` extra)"
)


def require_tensorboard() -> None:
    """Fail before any work starts when TensorBoard logging is asked for and cannot be done."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as error:
        raise RuntimeError(TENSORBOARD_MISSING) from error


class RunLog:
    def __init__(
        self, run_dir: Path, unit: str, enabled: bool, tensorboard: str | Path | None = None
    ) -> None:
        self.metrics = MetricsLog(run_dir / METRICS_FILE, enabled=enabled)
        self.unit, self.enabled, self.tensorboard = unit, enabled, tensorboard
        self.board: Any = None

    def begin(self, state: RunState | None, **start: Any) -> None:
        """A fresh run forgets the records of the one before; a resumed one drops the records of
        the unit that was cut short."""
        if state is None:
            self.metrics.reset()
            self.metrics.write("start", **start)
        else:
            self.metrics.truncate_to(self.unit, state.stage_index, state.completed)
            self.metrics.write(
                "resume", stage_index=state.stage_index, completed=state.completed, unit=self.unit
            )
        if self.enabled and self.tensorboard is not None:
            require_tensorboard()
            from torch.utils.tensorboard import SummaryWriter

            # Events after the saved state (the cut-short unit) come at steps >= global_step + 1.
            purge = state.global_step + 1 if state is not None else 0
            self.board = SummaryWriter(str(self.tensorboard), purge_step=purge)

    def standing(self, point: ResumePoint, planned: list[int], final_loss: float) -> None:
        """Say what was re-planned since the state was saved, and when the run is already complete."""
        for note in point.notes:
            log.info("%s", note)
            self.write("replan", note=note)
        if point.is_complete(planned):
            total, unit = "+".join(map(str, planned)), self.unit
            log.info("%s: the run is already complete (%s %ss, final loss %.4f); give it more %ss to "
                     "extend it", self.metrics.path.parent, total, unit, final_loss, unit)  # fmt: skip

    def write(self, event: str, **fields: Any) -> None:
        self.metrics.write(event, **fields)

    def plot(self, step: int, scalars: dict[str, float]) -> None:
        """TensorBoard scalars at optimiser step `step` (nothing without --tensorboard)."""
        if self.board is None:
            return
        for tag, value in scalars.items():
            if value is not None and math.isfinite(value):
                self.board.add_scalar(tag, value, step)

    def flush(self) -> None:
        if self.board is not None:
            self.board.flush()

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
            self.board = None
