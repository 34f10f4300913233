"""A tqdm progress bar per epoch (episode) showing loss, lr and throughput; silent on non-main
ranks or when off. A finished bar stays on the terminal as one line with the epoch's summary
(mean loss, lr, images/s and, when scored, the validation accuracy), so the terminal keeps one
line per finished epoch."""

from __future__ import annotations

from typing import Any


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


def _format(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
