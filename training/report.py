"""Evaluation reports: report.json (machine-readable, what `clipserve export` puts into the
checkpoint header), report.md (a human summary) and the PNG plots beside them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from training.metrics import read_metrics
from training.plots import plot_confusion, plot_per_class_accuracy, plot_training_curves
from training.protocols import Evaluation, SetSummary

REPORT_JSON = "report.json"
REPORT_MD = "report.md"


def write_report(
    evaluation: Evaluation, out_dir: Path, metrics_files: dict[str, Path], plots: bool = True
) -> Path:
    """Write the report files into `out_dir`; returns the JSON path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = evaluation.to_dict()
    figures = write_plots(evaluation, out_dir, metrics_files) if plots else {}
    data["figures"] = {name: p.name for name, p in figures.items()}
    path = out_dir / REPORT_JSON
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    (out_dir / REPORT_MD).write_text(markdown(data), encoding="utf-8")
    return path


def write_plots(evaluation: Evaluation, out_dir: Path, metrics_files: dict[str, Path]) -> dict[str, Path]:
    figures: dict[str, Path] = {}
    curves = plot_training_curves(
        {k: read_metrics(p) for k, p in metrics_files.items()}, out_dir / "curves.png"
    )
    if curves is not None:
        figures["training curves"] = curves
    for name, summary in evaluation.sets.items():
        classnames = summary.results[0].classnames
        per_class = summary.to_dict()["per_class_accuracy"]
        figures[f"{name}: per-class accuracy"] = plot_per_class_accuracy(
            classnames,
            [v if v is not None else 0.0 for v in per_class.values()],
            f"{name}: per-class accuracy (mean over checkpoints)",
            out_dir / f"per_class_{_slug(name)}.png",
        )
        figures[f"{name}: confusion"] = plot_confusion(
            classnames,
            summed_confusion(summary),
            f"{name}: confusion (all checkpoints)",
            out_dir / f"confusion_{_slug(name)}.png",
        )
    return figures


def summed_confusion(summary: SetSummary) -> torch.Tensor:
    return torch.stack([r.confusion() for r in summary.results]).sum(dim=0)


def markdown(data: dict[str, Any]) -> str:
    lines = [f"# Evaluation: {data['mode']}", "", f"Checkpoints ({len(data['checkpoints'])}):", ""]
    lines += [f"- `{c}`" for c in data["checkpoints"]]
    lines += ["", "## Summary", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_format(v)} |" for k, v in data["summary"].items()]
    lines += ["", "## Sets", "", "| set | images | classes | accuracy (mean ± std) | per checkpoint |"]
    lines += ["|---|---|---|---|---|"]
    for name, s in data["sets"].items():
        acc = s["accuracy"]
        per = ", ".join(f"{a:.2f}" for a in acc["per_checkpoint"])
        lines.append(
            f"| {name} | {s['images']} | {s['classes']} | {acc['mean']:.2f} ± {acc['std']:.2f} | {per} |"
        )
    skipped = sorted({p for s in data["sets"].values() for p in s["skipped"]})
    if skipped:
        lines += ["", "## Unreadable images (skipped)", ""] + [f"- `{p}`" for p in skipped]
    if data.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in data["notes"]]
    if data.get("figures"):
        lines += ["", "## Figures", ""] + [f"![{k}]({v})" for k, v in data["figures"].items()]
    return "\n".join(lines) + "\n"


def _format(value: Any) -> str:
    if isinstance(value, dict) and {"mean", "std"} <= set(value):
        return f"{value['mean']:.2f} ± {value['std']:.2f}"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
