"""A tqdm progress bar showing loss, lr and throughput; silent on non-main ranks or when off."""

from __future__ import annotations

from typing import Any


class Progress:
    def __init__(self, total: int, description: str, enabled: bool) -> None:
        self.bar: Any = None
        if enabled:
            from tqdm import tqdm  # the `train` extra; imported only when a bar is shown

            self.bar = tqdm(total=total, desc=description, unit="step", dynamic_ncols=True, leave=False)

    def show(self, loss: float, lr: float, images_per_s: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(
                loss=f"{loss:.4f}", lr=f"{lr:.2e}", img_s=f"{images_per_s:.0f}", refresh=False
            )

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
