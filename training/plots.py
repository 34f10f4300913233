"""PNG plots for evaluation reports: training curves, per-class accuracy, confusion matrix.
matplotlib (the `train` extra) is imported on first use, with the non-interactive Agg backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

MAX_TICK_LABELS = 40  # beyond this, class names would be unreadable; axes show indices instead


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError("plots need matplotlib: pip install 'clipserve[train]'") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(runs: dict[str, list[dict[str, Any]]], path: Path) -> Path | None:
    """Loss and lr per epoch, and the validation accuracy where it was scored, one line per run
    (seed), from their metrics.jsonl records."""
    epochs = {name: [r for r in records if r.get("event") == "epoch"] for name, records in runs.items()}
    if not any(epochs.values()):
        return None
    validation = {name: validation_points(records, epochs[name]) for name, records in runs.items()}
    plt = _pyplot()
    panels = 3 if any(validation.values()) else 2
    figure, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6))
    loss_axis, lr_axis = axes[0], axes[1]
    for name, records in epochs.items():
        x = list(range(1, len(records) + 1))
        loss_axis.plot(x, [r["loss"] for r in records], marker=".", label=name)
        lr_axis.plot(x, [r["lr"] for r in records], marker=".", label=name)
        if panels == 3 and validation[name]:
            axes[2].plot(*zip(*validation[name], strict=True), marker="o", label=name)
    loss_axis.set(title="training loss", xlabel="epoch", ylabel="cross-entropy (mean)")
    lr_axis.set(title="learning rate", xlabel="epoch", ylabel="lr")
    if panels == 3:
        axes[2].set(title="validation accuracy", xlabel="epoch", ylabel="top-1 accuracy (%)")
        low, high = axes[2].get_ylim()
        axes[2].set_ylim(max(low, 0.0), min(high, 100.5))  # percentages: no axis past 100
    loss_axis.legend(fontsize="small")
    return _save(plt, figure, path)


def validation_points(records: list[dict[str, Any]], epochs: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """(x, accuracy) of each validation record, x being the position of its epoch among `epochs`
    (stages follow each other on one axis)."""
    position = {(r.get("stage_index", 0), r["epoch"]): i + 1 for i, r in enumerate(epochs)}
    return [
        (position[(r.get("stage_index", 0), r["epoch"])], r["accuracy"])
        for r in records
        if r.get("event") == "validation" and (r.get("stage_index", 0), r["epoch"]) in position
    ]


def plot_per_class_accuracy(classnames: list[str], accuracy: list[float], title: str, path: Path) -> Path:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(max(6.0, min(0.25 * len(classnames), 40.0)), 3.8))
    axis.bar(range(len(classnames)), accuracy, color="tab:blue")
    axis.set(title=title, ylabel="top-1 accuracy (%)", ylim=(0, 100))
    _class_ticks(axis, classnames, "x")
    return _save(plt, figure, path)


def plot_confusion(classnames: list[str], confusion: torch.Tensor, title: str, path: Path) -> Path:
    """Row-normalised: each row is where that true class's images went."""
    plt = _pyplot()
    rows = confusion.float() / confusion.sum(dim=1, keepdim=True).clamp(min=1)
    size = max(4.0, min(0.3 * len(classnames), 20.0))
    figure, axis = plt.subplots(figsize=(size + 1.5, size))
    image = axis.imshow(rows.numpy(), cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    axis.set(title=title, xlabel="predicted", ylabel="true")
    _class_ticks(axis, classnames, "x")
    _class_ticks(axis, classnames, "y")
    figure.colorbar(image, ax=axis, fraction=0.046)
    return _save(plt, figure, path)


def _class_ticks(axis: Any, classnames: list[str], which: str) -> None:
    if len(classnames) > MAX_TICK_LABELS:
        return
    ticks = list(range(len(classnames)))
    if which == "x":
        axis.set_xticks(ticks, classnames, rotation=60, ha="right", fontsize="small")
    else:
        axis.set_yticks(ticks, classnames, fontsize="small")


def _save(plt: Any, figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
