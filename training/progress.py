"""What an epoch shows while it runs: a tqdm progress bar per epoch (episode) with loss, lr and
throughput, silent on non-main ranks or when off, and the meter of its sums and timings. A
finished bar stays on the terminal as one line with the epoch's summary (mean loss, lr, images/s
and, when scored, the validation accuracy), so the terminal keeps one line per finished epoch."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch


class Progress:
    def __init__(self, total: int, description: str, enabled: bool) -> None:
        self.bar: Any = None
        if enabled:
            from tqdm import tqdm  # the `train` extra; imported only when a bar is shown

            self.bar = tqdm(total=total, desc=description, unit="step", dynamic_ncols=True, leave=True)

    def show(self, loss: float, lr: float, images_per_s: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(
                loss=f"{loss:.4f}", lr=f"{lr:.2e}", img_s=f"{images_per_s:.0f}", refresh=False
            )

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def finish(self, **summary: float | None) -> None:
        """Close the bar with the epoch's summary as its last words (None values left out)."""
        if self.bar is None:
            return
        shown = {name: _format(value) for name, value in summary.items() if value is not None}
        self.bar.set_postfix(shown, refresh=True)
        self.bar.close()


@dataclass
class EpochMeter:
    """Sums of one epoch. The loss stays on the device between log steps: reading it every step
    would make the host wait for the GPU and stop it from queueing the next step's kernels."""

    loss_total: torch.Tensor
    images: int = 0
    started: float = field(default_factory=time.perf_counter)
    logged_at: float = field(default_factory=time.perf_counter)
    logged_step: int = 0

    def images_per_s(self) -> float:
        return self.images / max(time.perf_counter() - self.started, 1e-9)

    def step_seconds(self, step: int) -> float:
        """Wall time per step since the last log (data loading included); restarts the interval."""
        now = time.perf_counter()
        seconds = (now - self.logged_at) / max(step + 1 - self.logged_step, 1)
        self.logged_at, self.logged_step = now, step + 1
        return seconds


def _format(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
