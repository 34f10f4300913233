"""The ceiling of the image path, in one process: image-encoder img/s per batch size (eager, and CUDA
graph replay on CUDA), batched JPEG decode + resize img/s (nvJPEG on CUDA; on the CPU torchvision's
tensor decoder vs Pillow on a thread pool), and decode -> normalise -> encode run back to back.
No HTTP, no batcher: what the service's end-to-end figure is measured against (issue 7: 32-image
requests at about 70% of the decode + encode ceiling). Decode and resize are the service's own
functions (service.engine.device_decode, service.engine.decode), so the figures are the service's code paths.

    python bench/ceiling.py --device cuda                    # H200: ViT-B-32 bf16, random weights
    python bench/ceiling.py --arch clipserve-tiny-vit --batch-sizes 1,4,16 --images 16   # seconds

Rewrites its section of docs/PERFORMANCE.md (one per device type) and a plot, docs/ceiling-<device>.png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import open_clip
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, like the Makefile

from bench.images import photo_jpeg
from bench.report import command_line, device_description, replace_section, time_calls, today_utc
from models.backbone import Backbone, build_backbone
from service.engine.backends import TorchImageEncoder, resolve_precision
from service.engine.cuda_graphs import graphed_image_encoder
from service.engine.decode import DecodeLimits, Normalise, decode_image, resize_transform
from service.engine.device_decode import decode_jpegs, resize_tensors

LIMITS = DecodeLimits(max_pixels=100_000_000, formats=("JPEG",))


@dataclass
class Series:
    label: str
    images_per_s: dict[int, float] = field(default_factory=dict)  # batch size -> median img/s


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--pretrained", default=None, help="tag or weights file; default: random weights")
    parser.add_argument("--precision", default="auto", help="auto = bf16 on CUDA, fp32 on the CPU")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32,64,128,256")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--images", type=int, default=256, help="distinct JPEGs, cycled to fill a batch")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="Pillow decode threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per point; median reported")
    parser.add_argument("--out", type=Path, default=Path("docs/PERFORMANCE.md"))
    parser.add_argument("--plot", type=Path, default=None, help="default: docs/ceiling-<device>.png")
    parser.add_argument("--no-write", action="store_true", help="print the section, write nothing")
    parser.add_argument(
        "--json", type=Path, default=None, help="also the figures (bench/e2e.py --ceiling-json)"
    )
    return parser.parse_args(argv)


def images_per_second(fn: Callable[[], object], batch: int, device: torch.device, repeats: int) -> float:
    """Median img/s over `repeats` calls after one untimed call."""
    return batch / statistics.median(time_calls(fn, device, repeats, warmup=1))


def batch_of(blobs: list[bytes], size: int) -> list[bytes]:
    return [blobs[i % len(blobs)] for i in range(size)]


Encoder = Callable[[torch.Tensor], torch.Tensor]


def build_encoders(backbone: Backbone, sizes: list[int]) -> list[tuple[str, Encoder]]:
    """Eager, and on CUDA the service's graph encoder with one bucket per measured batch size."""
    encoders: list[tuple[str, Encoder]] = [("image encoder, eager", TorchImageEncoder(backbone))]
    if backbone.device.type == "cuda":
        encoders.append(("image encoder, CUDA graphs", graphed_image_encoder(backbone, sizes)))
    return encoders


@torch.no_grad()
def measure_encoder(
    backbone: Backbone, encoders: list[tuple[str, Encoder]], sizes: list[int], repeats: int
) -> list[Series]:
    device, side = backbone.device, backbone.preprocessing.image_size
    results = []
    for label, encoder in encoders:
        series = Series(label)
        for size in sizes:
            pixels = torch.randn(size, 3, side, side, device=device)  # [B, 3, S, S] normalised
            series.images_per_s[size] = images_per_second(
                lambda e=encoder, p=pixels: e(p), size, device, repeats
            )
        results.append(series)
    return results


def tensor_decode(blobs: list[bytes], device: torch.device, resize: Callable) -> torch.Tensor:
    """The service's tensor path: one decode_jpeg batch, resize + crop as tensor ops, stacked."""
    return torch.stack(resize_tensors(decode_jpegs(blobs, device), resize))  # [N, 3, S, S] uint8


def pillow_decode(blobs: list[bytes], pool: ThreadPoolExecutor, resize: Callable) -> torch.Tensor:
    """The service's Pillow path: decode_image per image on a thread pool."""
    rows = pool.map(lambda pair: decode_image(pair[1], pair[0], LIMITS, resize), enumerate(blobs))
    return torch.stack(list(rows))


@torch.no_grad()
def measure_decode(args: argparse.Namespace, backbone: Backbone, blobs: list[bytes]) -> list[Series]:
    device, resize = backbone.device, resize_transform(backbone.preprocessing)
    tensor_label = (
        "decode + resize, nvJPEG" if device.type == "cuda" else "decode + resize, torchvision tensors"
    )
    tensor, pillow = Series(tensor_label), Series(f"decode + resize, Pillow, {args.threads} threads")
    with ThreadPoolExecutor(args.threads) as pool:
        for size in parse_sizes(args.batch_sizes):
            batch = batch_of(blobs, size)
            tensor.images_per_s[size] = images_per_second(
                lambda b=batch: tensor_decode(b, device, resize), size, device, args.repeats
            )
            pillow.images_per_s[size] = images_per_second(
                lambda b=batch: pillow_decode(b, pool, resize), size, torch.device("cpu"), args.repeats
            )
    return [tensor, pillow]


@torch.no_grad()
def measure_pipeline(
    args: argparse.Namespace, backbone: Backbone, encoder: Encoder, blobs: list[bytes]
) -> Series:
    """The service's decoder on this device (nvJPEG on CUDA, Pillow threads on the CPU) ->
    normalise -> encode (graphs on CUDA), back to back on one stream."""
    device, resize = backbone.device, resize_transform(backbone.preprocessing)
    normalise = Normalise(backbone.preprocessing, device)
    series = Series("decode -> encode, measured back to back")
    with ThreadPoolExecutor(args.threads) as pool:

        def decode(batch: list[bytes]) -> torch.Tensor:
            if device.type == "cuda":
                return tensor_decode(batch, device, resize)
            return pillow_decode(batch, pool, resize)

        for size in parse_sizes(args.batch_sizes):
            batch = batch_of(blobs, size)
            series.images_per_s[size] = images_per_second(
                lambda b=batch: encoder(normalise(decode(b).to(device))), size, device, args.repeats
            )
    return series


@torch.no_grad()
def measure_fidelity(backbone: Backbone, blobs: list[bytes]) -> dict[str, float]:
    """How far the tensor path (nvJPEG + GPU resize on CUDA) is from the Pillow path, in pixels and
    in the model's image features; the tests assert the CPU figures (tests/service/test_device_decode)."""
    device, resize = backbone.device, resize_transform(backbone.preprocessing)
    with ThreadPoolExecutor(4) as pool:
        reference = pillow_decode(blobs, pool, resize)  # [N, 3, S, S] uint8, CPU
    ours = tensor_decode(blobs, device, resize).cpu()
    diff = (reference.int() - ours.int()).abs().float()
    normalise = Normalise(backbone.preprocessing, device)
    expected = backbone.encode_images(normalise(reference.to(device)))  # [N, D] normalised
    got = backbone.encode_images(normalise(ours.to(device)))
    return {
        "max_pixel": float(diff.max()),
        "mean_pixel": float(diff.mean()),
        "min_feature_cosine": float((expected * got).sum(-1).min()),
    }


def parse_sizes(text: str) -> list[int]:
    return sorted({int(part) for part in text.split(",") if part.strip()})


def serial_ceiling(decode: Series, encode: Series) -> Series:
    """What decode then encode allows per image when neither overlaps the other: 1 / (1/d + 1/e)."""
    series = Series("decode + encode ceiling, computed 1/(1/d + 1/e)")
    for size in decode.images_per_s.keys() & encode.images_per_s.keys():
        series.images_per_s[size] = 1 / (1 / decode.images_per_s[size] + 1 / encode.images_per_s[size])
    return series


def main(argv: list[str] | None = None) -> int:
    from bench.ceiling_report import plot, render  # matplotlib only when a report is written

    args = parse_args(argv)
    load = os.getloadavg()[0]
    device = torch.device(args.device)
    precision = resolve_precision(args.precision, device)
    backbone = build_backbone(args.arch, args.pretrained, precision=precision, device=device)
    blobs = [photo_jpeg(args.width, args.height, seed) for seed in range(args.images)]
    sizes = parse_sizes(args.batch_sizes)
    encoders = build_encoders(backbone, sizes)
    encoded = measure_encoder(backbone, encoders, sizes, args.repeats)
    decoders = measure_decode(args, backbone, blobs)
    pipeline = measure_pipeline(args, backbone, encoders[-1][1], blobs)
    service_decoder = decoders[0] if device.type == "cuda" else decoders[1]  # nvJPEG, or Pillow threads
    ceiling = serial_ceiling(service_decoder, encoded[-1])  # with the service's encoder on this device
    fidelity = measure_fidelity(backbone, blobs)
    every = [*encoded, *decoders, pipeline, ceiling]
    plot_path = args.plot or args.out.parent / f"ceiling-{device.type}.png"
    context = {
        "device": device_description(device),
        "load": f"{load:.1f}",
        "model": f"{backbone.identity.arch}, weights `{backbone.identity.weights}`, {precision}",
        "software": f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"open_clip {open_clip.__version__}, Python {sys.version.split()[0]}",
        "jpeg": f"{args.images} photo-like {args.width}x{args.height} JPEGs (bench/images.py, quality 90, "
        f"mean {sum(map(len, blobs)) / len(blobs) / 1024:.0f} KiB), cycled to fill each batch",
        "timing": f"{args.repeats} timed calls per point after 1 untimed; median reported",
        "date": today_utc(),
        "command": command_line(),
        "plot": plot_path.name,
    }
    if args.json is not None:
        args.json.write_text(json.dumps({series.label: series.images_per_s for series in every}, indent=1))
    section = render(device, every, ceiling, fidelity, context)
    print(section)
    if not args.no_write:
        plot(every, plot_path, f"{backbone.identity.arch} {precision}, {context['device']}")
        replace_section(args.out, f"ceiling:{device.type}", section)
        print(f"wrote {args.out} and {plot_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
