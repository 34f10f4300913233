"""Training speed of the one loop (issue 5): CoOp, 1,000 classes x 16 shots (16,000 images),
ViT-B/16, batch 32, one epoch (target: <= 15 s on an H200); MaPLe's 5-epoch schedule on the same
data (target: <= 5 min). Random weights, synthetic JPEGs of a typical ImageNet size (500x375)
written once to --images, ImageNet's 1,000 class names (so prompts have realistic lengths).

Records per method: epoch seconds, median step time, images/s, peak GPU memory, and the share of a
step spent in the text encoder: (class_embeddings forward + backward over all classes, timed on
its own) / (median training step). The loop runs exactly as `clipserve train` runs it: the data
path (decode, random resized crop, flip in loader workers), bf16 autocast, fp32 prompts.

    python bench/train_epoch.py --out docs/PERFORMANCE-train.md        # on the GPU machine
    python bench/train_epoch.py --tiny                                 # CPU smoke run, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
from PIL import Image, ImageDraw

from models.backbone import build_backbone
from models.prompts import METHODS, PromptLearner
from training.data import load_dataset
from training.distributed import DistContext
from training.feeds import autocast
from training.hparams import resolve
from training.loop import LoopOptions, StepInfo, train

# method -> epochs of its benchmark schedule (batch size and lr: the published defaults)
SCHEDULES = {"coop": 1, "maple": 5}
FULL = {"arch": "ViT-B-16", "classes": 1000, "shots": 16, "size": (500, 375)}
TINY = {"arch": "clipserve-tiny-vit", "classes": 20, "shots": 8, "size": (64, 48)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny model, 20 classes x 8 shots, on CPU")
    parser.add_argument(
        "--methods", nargs="+", default=list(SCHEDULES), help="methods to time (default: all)"
    )
    parser.add_argument(
        "--images", help="folder for the synthetic images (reused if complete; default: temp)"
    )
    parser.add_argument("--workers", type=int, default=min(14, os.cpu_count() or 1), help="loader workers")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", help="write the results as JSON here")
    parser.add_argument("--out", help="write the results as Markdown here (e.g. docs/PERFORMANCE-train.md)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    setup = TINY if args.tiny else FULL
    images = Path(args.images or tempfile.mkdtemp(prefix="clipserve-bench-"))
    write_images(images, setup["classes"], setup["shots"], setup["size"], args.workers)
    results = []
    for method in args.methods:
        if method not in METHODS:
            print(f"{method}: not available in this build (METHODS has {sorted(METHODS)}); skipped")
            results.append({"method": method, "skipped": "not in METHODS"})
            continue
        results.append(bench_method(method, setup, images, args))
        print(json.dumps(results[-1], indent=1))
    report = {
        "setup": {**setup, "device": device_name(args.device), "torch": torch.__version__},
        "results": results,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if args.out:
        Path(args.out).write_text(markdown(report))
    return 0


def write_images(root: Path, classes: int, shots: int, size: tuple[int, int], workers: int) -> None:
    """classes x shots smooth synthetic JPEGs (realistic file size and decode cost) + classnames.txt."""
    names = IMAGENET_CLASSNAMES[:classes]
    (root / "classnames.txt").write_text("".join(f"c{c:04d} {name}\n" for c, name in enumerate(names)))
    jobs = [
        (root / f"c{c:04d}" / f"{i:02d}.jpg", c * shots + i, size)
        for c in range(classes)
        for i in range(shots)
    ]
    missing = [job for job in jobs if not job[0].is_file()]
    if not missing:
        return
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(_write_image, missing, chunksize=64))


def _write_image(job: tuple[Path, int, tuple[int, int]]) -> None:
    path, seed, (width, height) = job
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    colours = (torch.rand(4, 3, generator=generator) * 255).int().tolist()
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for k, colour in enumerate(colours):
        x, y = (seed * 37 + k * 101) % width, (seed * 53 + k * 67) % height
        draw.ellipse((x, y, x + width // 3, y + height // 3), fill=tuple(colour))
    image.save(path, quality=90)


def bench_method(
    method: str, setup: dict[str, Any], images: Path, args: argparse.Namespace
) -> dict[str, Any]:
    device = torch.device(args.device)
    precision = "bf16" if device.type == "cuda" else "fp32"
    backbone = build_backbone(setup["arch"], None, precision=precision, device=device)
    data = load_dataset(images)
    torch.manual_seed(1)
    learner = METHODS[method](backbone, data.classnames).to(device)
    hp = resolve(method, setup["shots"], {"epochs": SCHEDULES.get(method, 1)})
    timer = StepTimer(device)
    reset_peak_memory(device)
    with tempfile.TemporaryDirectory() as run_dir:
        options = LoopOptions(
            Path(run_dir), num_workers=args.workers, resume=False, step_hook=timer, log_every=50
        )
        stages = {stage: hp for stage in learner.training_stages}  # the loop reads hparams per stage
        result = train(learner, data, stages, DistContext(device=device), options)
    step = statistics.median(timer.intervals) if timer.intervals else result.seconds / max(result.steps, 1)
    text = text_encoder_seconds(learner, device)
    return {
        "method": method,
        "images": len(data),
        "classes": len(data.keys),
        "batch_size": hp.batch_size,
        "epochs": hp.epochs,
        "seconds_total": round(result.seconds, 2),
        "seconds_per_epoch": round(result.seconds / max(result.epochs_run, 1), 2),
        "steps": result.steps,
        "step_ms_median": round(1000 * step, 2),
        "images_per_s": round(result.images / max(result.seconds, 1e-9), 1),
        "peak_memory_gib": peak_memory_gib(device),
        "text_encoder_ms": round(1000 * text, 2),
        "text_encoder_share": round(min(text / step, 1.0), 3),
    }


class StepTimer:
    """Step-to-step intervals, synchronised with the device (the loop queues work asynchronously)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.last = device, 0.0
        self.intervals: list[float] = []

    def __call__(self, info: StepInfo) -> None:
        synchronize(self.device)
        now = time.perf_counter()
        if self.last and info.step > 0:
            self.intervals.append(now - self.last)
        self.last = now


def text_encoder_seconds(learner: PromptLearner, device: torch.device, repeats: int = 10) -> float:
    """Median time of one forward + backward through the text side for all trained classes."""
    learner.train()
    times = []
    for _ in range(repeats + 2):
        synchronize(device)
        started = time.perf_counter()
        with autocast(device):
            embeddings = learner.class_embeddings(learner.classnames)
        embeddings.float().square().sum().backward()
        synchronize(device)
        times.append(time.perf_counter() - started)
        learner.zero_grad(set_to_none=True)
    return statistics.median(times[2:])  # the first two warm up kernels and allocator


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


def device_name(device: str) -> str:
    return (
        torch.cuda.get_device_name(device) if device.startswith("cuda") else f"CPU ({os.cpu_count()} cores)"
    )


def markdown(report: dict[str, Any]) -> str:
    setup = report["setup"]
    lines = [
        "# Training speed (bench/train_epoch.py)",
        "",
        f"{setup['arch']}, random weights, {setup['classes']} classes x {setup['shots']} shots of synthetic "
        f"{setup['size'][0]}x{setup['size'][1]} JPEGs, on {setup['device']}, torch {setup['torch']}.",
        "",
        "| method | batch | epochs | s/epoch | step ms (median) | img/s | peak GiB | text encoder share |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        if "skipped" in r:
            lines.append(f"| {r['method']} | skipped: {r['skipped']} | | | | | | |")
            continue
        lines.append(
            f"| {r['method']} | {r['batch_size']} | {r['epochs']} | {r['seconds_per_epoch']} | "
            f"{r['step_ms_median']} | {r['images_per_s']} | {r['peak_memory_gib']} | "
            f"{r['text_encoder_share']:.0%} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
