"""Text encoder: open_clip's full-context `encode_text` vs the one text path truncated to the longest EOT.

Both start from the same token ids ([N, 77]); tokenizing is not timed. The script checks that the
two give the same features (bit-identical, or within a tolerance for the precision) before it
writes anything, then rewrites its own section of docs/PERFORMANCE.md (one section per device type).

    python bench/text_truncation.py                       # ViT-B-32, random weights, CPU
    python bench/text_truncation.py --device cuda --precision bf16
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, like the Makefile

from bench.report import command_line, device_description, replace_section, time_calls, today_utc
from models.backbone import Backbone, build_backbone
from models.text import embed_tokens, encode_token_embeddings, tokenize

TEMPLATE = "a photo of a {}."
TOLERANCE = {"fp32": 1e-5, "bf16": 5e-2, "fp16": 5e-3}  # max abs difference allowed between the paths


@dataclass
class Result:
    full_s: list[float]  # seconds per call, open_clip encode_text over the whole context
    truncated_s: list[float]  # seconds per call, the one text path
    tokens: int  # tokens the truncated path runs (longest EOT + 1)
    context: int  # tokens the full path runs
    max_abs_diff: float
    bit_identical: bool


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--pretrained", default=None, help="tag or weights file; default: random weights")
    parser.add_argument("--precision", default="fp32", choices=sorted(TOLERANCE))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads; default: torch's")
    parser.add_argument("--prompts", type=int, default=1000, help="number of class names")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=0, help="untimed calls besides the equality check")
    parser.add_argument("--out", type=Path, default=Path("docs/PERFORMANCE.md"))
    parser.add_argument("--no-write", action="store_true", help="print the section, do not write it")
    return parser.parse_args(argv)


def class_prompts(count: int) -> list[str]:
    return [TEMPLATE.format(f"class {i} name") for i in range(count)]


def measure(backbone: Backbone, prompts: list[str], repeats: int, warmup: int) -> Result:
    tokenized = tokenize(backbone, prompts)
    tokens = tokenized.tokens.to(backbone.device)  # [N, 77]
    eot_index = tokenized.eot_index.to(backbone.device)  # [N]

    def full() -> torch.Tensor:
        return backbone.model.encode_text(tokens).float()  # [N, D]

    def truncated() -> torch.Tensor:
        return encode_token_embeddings(backbone, embed_tokens(backbone, tokens), eot_index)  # [N, D]

    reference, ours = full(), truncated()  # also the first, untimed, warm-up call of each
    return Result(
        full_s=time_calls(full, backbone.device, repeats, warmup),
        truncated_s=time_calls(truncated, backbone.device, repeats, warmup),
        tokens=int(eot_index.max()) + 1,
        context=int(tokens.shape[1]),
        max_abs_diff=float((ours - reference).abs().max()),
        bit_identical=bool(torch.equal(ours, reference)),
    )


def _duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.1f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f} µs"


def _row(label: str, seconds: list[float], prompts: int) -> str:
    median = statistics.median(seconds)
    return (
        f"| {label} | {_duration(median)} (min {_duration(min(seconds))}) | {_duration(median / prompts)} |"
    )


def render(args: argparse.Namespace, backbone: Backbone, result: Result, load: float) -> str:
    full, ours = statistics.median(result.full_s), statistics.median(result.truncated_s)
    on_gpu = backbone.device.type == "cuda"
    kind = "GPU" if on_gpu else f"{os.cpu_count()}-core CPU"
    pending = "" if on_gpu else " The GPU figure is pending an H200 session."
    return f"""
## Text encoder: full context vs truncated to the longest EOT ({kind})

This is a {kind} figure.{pending}

| path | median per call (min) | per prompt |
|---|---|---|
{_row(f"open_clip `encode_text`, all {result.context} tokens", result.full_s, args.prompts)}
{_row(f"one text path, first {result.tokens} tokens", result.truncated_s, args.prompts)}

Speed-up **{full / ours:.2f}×**. Outputs bit-identical: {"yes" if result.bit_identical else "no"};
max abs difference {result.max_abs_diff:.2e} (allowed for {args.precision}: {TOLERANCE[args.precision]:g}).

- prompts: {args.prompts} class names, `{TEMPLATE.format("class <i> name")}`, one batch per call
- model: {backbone.identity.arch}, weights `{backbone.identity.weights}`, {args.precision}
- device: {device_description(backbone.device)}; 1-minute load average at start {load:.1f}
- software: torch {torch.__version__}, open_clip {open_clip.__version__}, Python {sys.version.split()[0]}
- {args.repeats} timed calls per path after {1 + args.warmup} untimed; median reported
- date: {today_utc()}
- command: `{command_line()}`
"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]  # other work on the machine skews CPU figures; say how busy it was
    backbone = build_backbone(args.arch, args.pretrained, precision=args.precision, device=args.device)
    result = measure(backbone, class_prompts(args.prompts), args.repeats, args.warmup)
    section = render(args, backbone, result, load)
    print(section)
    if result.max_abs_diff > TOLERANCE[args.precision]:
        print(f"error: the paths differ by {result.max_abs_diff:.2e}; not writing", file=sys.stderr)
        return 1
    if not args.no_write:
        replace_section(args.out, f"text_truncation:{backbone.device.type}", section)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
