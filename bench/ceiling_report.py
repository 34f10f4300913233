"""bench/ceiling.py's doc section (a table of img/s per batch size) and its plot (img/s vs batch size)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from bench.ceiling import Series

TARGET_BATCH = 32  # issue 7: 32-image requests at >= 70% of the decode + encode ceiling
TARGET_SHARE = 0.7


def _rate(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def table(every: list[Series]) -> str:
    sizes = sorted(set().union(*(s.images_per_s for s in every)))
    header = "| img/s by batch size | " + " | ".join(str(size) for size in sizes) + " |"
    rule = "|---|" + "---:|" * len(sizes)
    rows = [
        f"| {series.label} | " + " | ".join(_rate(series.images_per_s.get(size)) for size in sizes) + " |"
        for series in every
    ]
    return "\n".join([header, rule, *rows])


def target_line(ceiling: Series) -> str:
    at = ceiling.images_per_s.get(TARGET_BATCH)
    if at is None:
        return f"(batch {TARGET_BATCH} not measured: no end-to-end target derived from this run)"
    return (
        f"Decode + encode ceiling at batch {TARGET_BATCH}: **{_rate(at)} img/s**; "
        f"{TARGET_SHARE:.0%} of it, the end-to-end target for {TARGET_BATCH}-image requests "
        f"on this machine: **{_rate(TARGET_SHARE * at)} img/s**."
    )


def fidelity_line(device: torch.device, fidelity: dict[str, float]) -> str:
    path = "nvJPEG + GPU resize" if device.type == "cuda" else "torchvision tensor decode + resize"
    return (
        f"Pixels, {path} vs Pillow (the CPU path and open_clip's own transform) on these images: "
        f"max difference {fidelity['max_pixel']:.0f} levels, mean {fidelity['mean_pixel']:.3f}; "
        f"cosine between the model's image features from each: >= {fidelity['min_feature_cosine']:.6f}."
    )


def render(
    device: torch.device,
    every: list[Series],
    ceiling: Series,
    fidelity: dict[str, float],
    context: dict[str, str],
) -> str:
    on_gpu = device.type == "cuda"
    kind = "GPU" if on_gpu else "CPU"
    decoder = "nvJPEG + GPU resize" if on_gpu else "Pillow on a thread pool"
    encoder = "CUDA graphs" if on_gpu else "eager"
    note = (
        "Decode and resize run on the GPU (torchvision.io.decode_jpeg on nvJPEG, resize as tensor ops);"
        " Pillow runs on CPU threads for comparison."
        if on_gpu
        else "This is a CPU figure from a shared 2-core development machine (other jobs were running: see\n"
        "the load average): it shows that the code runs and how the parts compare here, not what the\n"
        "H200 does. On the CPU the service decodes with Pillow; the torchvision tensor path is the GPU\n"
        "path's code run with libjpeg-turbo, and its antialiased bicubic resize is slow on the CPU.\n"
        "The GPU figures are pending an H200 session (see the GPU section)."
    )
    return f"""
## Image path ceiling: encoder, decode + resize, decode -> encode ({kind})

{note}

{table(every)}

{target_line(ceiling)} The ceiling combines the service's decoder on this device ({decoder}) with
its encoder ({encoder}). "Measured back to back" runs the same two in turn for each batch; the
service overlaps one request's decode with another's encode on separate CUDA streams, so on the
GPU it can exceed the serial ceiling.

{fidelity_line(device, fidelity)}

![img/s vs batch size]({context["plot"]})

- model: {context["model"]}
- images: {context["jpeg"]}
- device: {context["device"]}; 1-minute load average at start {context["load"]}
- software: {context["software"]}
- {context["timing"]}
- date: {context["date"]}
- command: `{context["command"]}`
"""


def plot(every: list[Series], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for series in every:
        sizes = sorted(series.images_per_s)
        axes.plot(sizes, [series.images_per_s[s] for s in sizes], marker="o", label=series.label)
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel("batch size")
    axes.set_ylabel("images / s")
    axes.set_title(title, fontsize=9)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
