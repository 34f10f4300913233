"""Image encoder on the CPU: torch eager (fp32) vs ONNX Runtime's CPU provider, as the service runs each.

torch: service.engine.backends.TorchImageEncoder over an fp32 backbone. ONNX Runtime: the stock image tower
exported by models.onnx_export and run by service.engine.onnx_backend.OnnxImageEncoder (the service's
session options). Both run in this process on the same pixels, interleaved (the order alternates
every repeat), so other jobs on a shared machine slow both alike; the speed-up is the median of
the per-repeat ratios. Outputs must agree within 1e-3 before anything is timed or written. Then
each is profiled at the largest batch (where the time goes), the ONNX Runtime levers are compared
(bench/onnx_levers.py), and the section `bench:onnx-cpu` of docs/PERFORMANCE.md and a plot are
rewritten.

    python bench/onnx_cpu.py                        # ViT-B-32, random weights, batches 1 8 32
    python bench/onnx_cpu.py --arch ViT-B-16 --pretrained openai --batch-sizes 1 16
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, like the Makefile

from bench.encoder_profile import OpShare, onnx_profile, torch_profile
from bench.onnx_cpu_report import render, write_plot
from bench.onnx_levers import LEVER_BATCH, Levers, measure_levers
from bench.report import replace_section
from models.backbone import Backbone, build_backbone
from models.onnx_export import export_image_encoder, stock_image_encoder
from service.engine.backends import TorchImageEncoder
from service.engine.onnx_backend import OnnxImageEncoder, session_options

Encoder = Callable[[torch.Tensor], torch.Tensor]
TOLERANCE = 1e-3  # max |onnx - torch| on normalised fp32 embeddings, as the service's start-up probe


class DisagreementError(RuntimeError):
    """The two encoders do not compute the same function; their speeds are not comparable."""


@dataclass
class Measurement:
    seconds: dict[str, dict[int, list[float]]]  # backend -> batch size -> seconds per call
    max_abs_diff: float
    flops_per_image: float
    profiles: dict[str, list[OpShare]]
    levers: Levers | None

    def images_per_s(self, backend: str, batch: int, best: bool = False) -> float:
        calls = self.seconds[backend][batch]
        return batch / (min(calls) if best else statistics.median(calls))

    def speedup(self, batch: int) -> float:
        """Median over repeats of torch time / ONNX time, each pair measured back to back."""
        pairs = zip(self.seconds["torch"][batch], self.seconds["onnx"][batch], strict=True)
        return statistics.median(t / o for t, o in pairs)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--pretrained", default=None, help="tag or weights file; default: random weights")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per backend and batch size")
    parser.add_argument("--profile-runs", type=int, default=2, help="profiled calls at the largest batch")
    parser.add_argument("--lever-repeats", type=int, default=4, help="0 skips the levers comparison")
    parser.add_argument("--threads", type=int, default=None, help="torch and ORT threads; default: torch's")
    parser.add_argument("--onnx-path", type=Path, default=None, help="reuse this export; default: export now")
    parser.add_argument("--out", type=Path, default=Path("docs/PERFORMANCE.md"))
    parser.add_argument("--plot", type=Path, default=Path("docs/onnx-cpu.png"))
    parser.add_argument("--no-write", action="store_true", help="print the section, do not write it")
    return parser.parse_args(argv)


def check_agreement(reference: Encoder, candidate: Encoder, image_size: int, tolerance: float) -> float:
    """Largest |candidate - reference| on a seeded probe batch; raises past `tolerance`."""
    probe = torch.randn(4, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    difference = float((candidate(probe) - reference(probe)).abs().max())
    if not difference <= tolerance:  # also catches NaN
        raise DisagreementError(f"encoders differ by {difference:.3g} > {tolerance:g}; not timing them")
    return difference


def time_interleaved(
    encoders: dict[str, Encoder], pixels: torch.Tensor, repeats: int
) -> dict[str, list[float]]:
    """Seconds per call for each encoder; one untimed call each, then alternating order per repeat."""
    for encode in encoders.values():
        encode(pixels)
    seconds: dict[str, list[float]] = {name: [] for name in encoders}
    names = list(encoders)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else reversed(names):
            start = time.perf_counter()
            encoders[name](pixels)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def flops_per_image(encode: Encoder, image_size: int) -> float:
    with FlopCounterMode(display=False) as counter:
        encode(torch.zeros(1, 3, image_size, image_size))
    return float(counter.get_total_flops())


def measure(args: argparse.Namespace, backbone: Backbone, onnx_path: Path) -> Measurement:
    size = backbone.preprocessing.image_size
    encoders: dict[str, Encoder] = {
        "torch": TorchImageEncoder(backbone),
        "onnx": OnnxImageEncoder(onnx_path, torch.device("cpu")),
    }
    difference = check_agreement(encoders["torch"], encoders["onnx"], size, TOLERANCE)
    generator = torch.Generator().manual_seed(1)
    seconds: dict[str, dict[int, list[float]]] = {name: {} for name in encoders}
    for batch in args.batch_sizes:
        pixels = torch.randn(batch, 3, size, size, generator=generator)
        for name, calls in time_interleaved(encoders, pixels, args.repeats).items():
            seconds[name][batch] = calls
        print(
            f"batch {batch}: "
            + ", ".join(f"{n} {batch / statistics.median(c[batch]):.2f} img/s" for n, c in seconds.items()),
            flush=True,
        )
    largest = torch.randn(max(args.batch_sizes), 3, size, size, generator=generator)
    profiles = {
        "torch": torch_profile(encoders["torch"], largest, args.profile_runs),
        "onnx": onnx_profile(onnx_path, session_options(), largest, args.profile_runs),
    }
    levers = None
    if args.lever_repeats > 0:
        lever_pixels = torch.randn(LEVER_BATCH, 3, size, size, generator=generator)
        levers = measure_levers(onnx_path, encoders["torch"], lever_pixels, args.lever_repeats)
    return Measurement(seconds, difference, flops_per_image(encoders["torch"], size), profiles, levers)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # the ONNX session takes torch's count (onnx_backend)
    load = os.getloadavg()[0]  # other jobs on the machine skew CPU figures; say how busy it was
    backbone = build_backbone(args.arch, args.pretrained, precision="fp32", device="cpu")
    with tempfile.TemporaryDirectory(prefix="clipserve-onnx-bench-") as folder:
        onnx_path = args.onnx_path or Path(folder) / "image_encoder.onnx"
        if not onnx_path.is_file():
            export_image_encoder(stock_image_encoder(backbone), onnx_path, backbone.preprocessing.image_size)
        try:
            result = measure(args, backbone, onnx_path)
        except DisagreementError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    section = render(args, backbone, result, load)
    print(section)
    if not args.no_write:
        write_plot(args.plot, args.arch, result)
        replace_section(args.out, "onnx-cpu", section)
        print(f"wrote {args.out} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
