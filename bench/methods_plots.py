"""The PNG plots of docs/METHODS.md (matplotlib, Agg): the few-shot curve, domain shift per style,
and base-to-new accuracy per method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.plots import _pyplot

LABELS = {
    "coop": "CoOp",
    "coop-b2n": "CoOp",
    "cocoop": "CoCoOp",
    "maple": "MaPLe",
    "gopro": "GOPro",
    "ship": "SHIP",
}


def plot_few_shot(curve: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    shots = sorted(curve["coop"])
    for method in ("linear probe", "coop", "maple"):
        means = [curve[method][k]["mean"] for k in shots]
        stds = [curve[method][k]["std"] for k in shots]
        axis.errorbar(shots, means, yerr=stds, marker="o", capsize=3, label=LABELS.get(method, method))
    for method, style in (("zero-shot", "--"), ("zero-shot ensemble", ":")):
        axis.axhline(curve[method][0]["mean"], linestyle=style, color="grey", label=method)
    axis.set(
        xscale="log",
        xticks=shots,
        xticklabels=[str(k) for k in shots],
        xlabel="shots per class (K)",
        ylabel="accuracy %",
    )
    axis.set_title("few-shot, 64 classes, condition photos")
    axis.legend(fontsize="small")
    return _save(plt, figure, path)


def plot_shift(result: dict[str, Any], path: Path) -> Path:
    sets = ["source", *result["styles"]]
    return _bars(result["table"], sets, "16-shot models under domain shift", path)


def plot_base_to_new(result: dict[str, Any], path: Path) -> Path:
    table = {m: row for m, row in result["table"].items() if "new" in row}
    return _bars(table, ["base", "new"], "base-to-new (own label spaces)", path)


def _bars(table: dict[str, dict[str, Any]], columns: list[str], title: str, path: Path) -> Path:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(max(6, len(table) * 1.1), 4))
    width = 0.8 / len(columns)
    for i, column in enumerate(columns):
        means = [row[column]["mean"] if column in row else 0 for row in table.values()]
        stds = [row[column]["std"] if column in row else 0 for row in table.values()]
        xs = [x + i * width for x in range(len(table))]
        axis.bar(xs, means, width, yerr=stds, capsize=2, label=column)
    axis.set_xticks([x + width * (len(columns) - 1) / 2 for x in range(len(table))])
    axis.set_xticklabels([LABELS.get(m, m) for m in table], rotation=20, fontsize="small")
    axis.set(ylabel="accuracy %", ylim=(0, 100), title=title)
    axis.legend(fontsize="small", ncol=min(len(columns), 5))
    return _save(plt, figure, path)


def _save(plt: Any, figure: Any, path: Path) -> Path:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
