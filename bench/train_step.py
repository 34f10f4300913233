"""One training step of every prompt method at many classes: wall time and peak GPU memory.

    python bench/train_step.py --out docs/PERFORMANCE-train-step.md     # CUDA, ViT-B-16, 1000 classes
    python bench/train_step.py --smoke                                  # CPU, tiny model, 6 classes

Each method trains at its paper's batch size (CoOp 32, CoCoOp 1, MaPLe 4, GOPro 4, SHIP 256) on
random pixels and ImageNet's class names, through the same interface the training loop uses:
per stage, `set_stage`, an optimiser over `trainable_parameters()`, `loss(batch)`, backward, step.
The backbone is built in bf16 (layer norms fp32) and the step runs under bf16 autocast; the learned
tensors stay fp32. Weights are random: time and memory do not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, like the Makefile

from models.backbone import Backbone, build_backbone
from models.prompts import METHODS, Batch, PromptLearner

PAPER_BATCH = {"coop": 32, "cocoop": 1, "maple": 4, "gopro": 4, "ship": 256}
SMOKE_OVERRIDES: dict[str, dict[str, Any]] = {"maple": {"prompt_depth": 2}}


@dataclass
class Result:
    method: str
    stage: str
    batch: int
    classes: int
    median_ms: float | None
    peak_gib: float | None
    note: str = ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="ViT-B-16")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per method and stage")
    parser.add_argument("--grad-checkpoint", action="store_true", help="for CoCoOp/GOPro text chunks")
    parser.add_argument("--out", type=Path, help="write the results as a markdown table here")
    parser.add_argument("--json", type=Path, help="also the results as JSON rows (bench/gpu_check.py)")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny model, 6 classes, batch <= 4")
    args = parser.parse_args(argv)
    if args.smoke:
        args.arch, args.classes, args.repeats = "clipserve-tiny-vit", 6, 1
    return args


def class_names(count: int) -> list[str]:
    names = list(IMAGENET_CLASSNAMES)
    return [names[i % len(names)] + (f" {i // len(names)}" if i >= len(names) else "") for i in range(count)]


def make_learner(name: str, backbone: Backbone, names: list[str], args: argparse.Namespace) -> PromptLearner:
    config_class = METHODS[name].config_class
    fields = dict(SMOKE_OVERRIDES.get(name, {})) if args.smoke else {}
    known = config_class.__dataclass_fields__
    if "label_only_classes" in known:
        fields["label_only_classes"] = names[len(names) // 2 :]  # base-to-new: half the classes
    if args.grad_checkpoint and "grad_checkpoint" in known:
        fields["grad_checkpoint"] = True
    torch.manual_seed(0)
    return METHODS[name](backbone, names, config_class(**fields)).to(backbone.device).train()


def make_batch(learner: PromptLearner, size: int) -> Batch:
    device, side = learner.backbone.device, learner.backbone.preprocessing.image_size
    label_only = len(getattr(learner.config, "label_only_classes", []))
    labels = torch.randint(len(learner.classnames) - label_only, (size,), device=device)

    def pixels() -> torch.Tensor:
        return torch.randn(size, 3, side, side, device=device)

    return Batch(labels=labels, images=pixels(), views={view: pixels() for view in learner.extra_views})


def timed_steps(learner: PromptLearner, batch: Batch, repeats: int) -> tuple[float, float | None]:
    """One warm-up step, then `repeats` timed ones: (median ms, peak GiB allocated on CUDA)."""
    device = learner.backbone.device
    optimiser = torch.optim.SGD(learner.trainable_parameters(), lr=1e-3, momentum=0.9)
    times = []
    for step in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = learner.loss(batch)
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step:
            times.append((time.perf_counter() - start) * 1000)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return statistics.median(times), peak


def bench_method(name: str, backbone: Backbone, args: argparse.Namespace) -> list[Result]:
    names = class_names(args.classes)
    size = min(PAPER_BATCH.get(name, 4), 4) if args.smoke else PAPER_BATCH.get(name, 32)
    results = []
    try:
        learner = make_learner(name, backbone, names, args)
        for stage in learner.training_stages:
            learner.set_stage(stage)
            median_ms, peak = timed_steps(learner, make_batch(learner, size), args.repeats)
            results.append(Result(name, stage, size, len(names), median_ms, peak))
    except torch.cuda.OutOfMemoryError:
        results.append(Result(name, "-", size, len(names), None, None, "out of memory"))
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return results


def markdown(results: list[Result], args: argparse.Namespace, device: str) -> str:
    setup = (
        "Smoke run: fp32 backbone, no autocast; the figures mean nothing"
        if args.smoke
        else "Backbone bf16 (layer norms fp32), step under bf16 autocast, learned tensors fp32"
    )
    checkpointing = "on" if args.grad_checkpoint else "off"
    lines = [
        f"# One training step per prompt method ({args.arch}, {args.classes} classes)",
        "",
        f"Device: {device}. {setup}; text-chunk gradient checkpointing {checkpointing}; median of "
        f"{args.repeats} steps after one warm-up; peak = torch.cuda.max_memory_allocated during the "
        f"step (backbone weights included). Generated by `bench/train_step.py`.",
        "",
        "| method | stage | batch | classes | step (ms) | peak memory (GiB) | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ms = "-" if r.median_ms is None else f"{r.median_ms:.1f}"
        peak = "-" if r.peak_gib is None else f"{r.peak_gib:.2f}"
        lines.append(f"| {r.method} | {r.stage} | {r.batch} | {r.classes} | {ms} | {peak} | {r.note} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print(
            "bench/train_step.py measures GPU time and memory and needs a CUDA device; none is "
            "available. For a CPU smoke run of the same code on the tiny model, pass --smoke.",
            file=sys.stderr,
        )
        return 2
    device = "cpu" if args.smoke else "cuda"
    precision = "fp32" if args.smoke else "bf16"
    backbone = build_backbone(args.arch, pretrained=None, precision=precision, device=device)
    results = [result for name in args.methods for result in bench_method(name, backbone, args)]
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU (smoke run)"
    table = markdown(results, args, name)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
    if args.json:
        args.json.write_text(json.dumps([asdict(result) for result in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
