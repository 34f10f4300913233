"""The first request with 1,000 new labels vs the same labels cached, through HTTP; and what truncating
the text encoder to the longest EOT saves on that first request.

HTTP: starts `clipserve serve` on loopback (bench/server_process.py) with its built-in zeroshot model
and one template, and repeats, back to back: 1 image + N labels never seen before (fresh random
words every repeat), the same request again (all N cached), and 1 image + 10 of those labels
(cached). Latency is measured at the client.

In this process, before the server starts (so the two never compete for the cores): the text work
of N such labels as the server does it (`class_embedding_matrix`: tokenize, then the one text path
of models/text.py, truncated to the longest EOT), split into tokenizing and encoding, and the same
tokens through open_clip's `encode_text` over the full context. Rewrites `bench:text-first-request:<device>`.

    python bench/text_first_request.py                      # demo backbone (make serve), CPU
    python bench/text_first_request.py --arch ViT-B-32 --pretrained random --device cuda
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import torch
import torch.nn.functional as F
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, like the Makefile

from bench.report import replace_section
from bench.server_process import ServerProcess, clipserve_command, free_port
from bench.text_first_request_report import render
from bench.text_truncation import TOLERANCE
from models.backbone import Backbone, build_backbone
from models.text import embed_tokens, encode_token_embeddings, tokenize
from models.zeroshot import class_embedding_matrix
from service.engine.backends import resolve_precision

TEMPLATE = "a photo of a {}."  # the server's default template set ("photo") is this one template
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
T = TypeVar("T")


class FreshLabels:
    """Labels nobody asked for before in this run: two made-up words each, never repeated."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.seen: set[str] = set()

    def take(self, count: int) -> list[str]:
        labels: list[str] = []
        while len(labels) < count:
            label = f"{self._word()} {self._word()}"
            if label not in self.seen:
                self.seen.add(label)
                labels.append(label)
        return labels

    def _word(self) -> str:
        return "".join(self.rng.choices(SYLLABLES, k=self.rng.randint(2, 3)))


@dataclass
class EncoderCosts:
    tokenize_s: list[float]
    truncated_s: list[float]  # embed + the one text path up to the longest EOT
    full_s: list[float]  # open_clip encode_text over the whole context
    served_s: list[float]  # class_embedding_matrix, what the server runs for new labels
    tokens: int  # longest EOT + 1 (max over repeats)
    imagenet_tokenize_s: float  # 1,000 real class names, the first time this process sees them
    context: int
    max_abs_diff: float


@dataclass
class Latencies:
    new_s: list[float]
    cached_s: list[float]
    few_cached_s: list[float]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--arch", default="clipserve-demo-vit")
    parser.add_argument("--pretrained", default="models/demo/backbone.safetensors", help="or 'random'")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--labels", type=int, default=1000, help="new labels in the first request")
    parser.add_argument("--few", type=int, default=10, help="cached labels in the small request")
    parser.add_argument("--repeats", type=int, default=20, help="HTTP rounds (new, cached, few cached)")
    parser.add_argument("--encoder-repeats", type=int, default=5, help="in-process text-encoder rounds")
    parser.add_argument("--out", type=Path, default=Path("docs/PERFORMANCE.md"))
    parser.add_argument("--no-write", action="store_true", help="print the section, do not write it")
    parser.add_argument("--json", type=Path, default=None, help="also the raw timings (bench/gpu_check.py)")
    return parser.parse_args(argv)


def timed(device: torch.device, fn: Callable[..., T], *args: object) -> tuple[float, T]:
    """Seconds of one call (synchronising the GPU around it) and its value."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    value = fn(*args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, value


def truncated_features(backbone: Backbone, tokens: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
    return encode_token_embeddings(backbone, embed_tokens(backbone, tokens), eot_index)  # [N, D]


def full_context_features(backbone: Backbone, tokens: torch.Tensor) -> torch.Tensor:
    return backbone.model.encode_text(tokens).float()  # [N, D]


@torch.inference_mode()
def encoder_costs(backbone: Backbone, fresh: FreshLabels, count: int, repeats: int) -> EncoderCosts:
    device = backbone.device
    # Made-up words are the tokenizer's slow case (no word in its cache, many BPE merges); real
    # class names, tokenized first here, show the other end.
    imagenet = [TEMPLATE.format(name) for name in IMAGENET_CLASSNAMES]
    imagenet_s, _ = timed(device, tokenize, backbone, imagenet)
    costs = EncoderCosts([], [], [], [], 0, imagenet_s, backbone.context_length, max_abs_diff=0.0)
    for round_ in range(repeats + 1):  # round 0 warms up and is not kept
        labels = fresh.take(count)
        prompts = [TEMPLATE.format(label) for label in labels]
        tokenize_s, tokenized = timed(device, tokenize, backbone, prompts)
        tokens = tokenized.tokens.to(device)  # [N, 77]
        truncated_s, ours = timed(device, truncated_features, backbone, tokens, tokenized.eot_index)
        full_s, reference = timed(device, full_context_features, backbone, tokens)
        # Its own fresh labels: the tokenizer caches words, so reusing `labels` would flatter it.
        served_s, _ = timed(device, class_embedding_matrix, backbone, fresh.take(count), (TEMPLATE,))
        difference = float((F.normalize(ours, dim=-1) - F.normalize(reference, dim=-1)).abs().max())
        costs.max_abs_diff = max(costs.max_abs_diff, difference)
        costs.tokens = max(costs.tokens, int(tokenized.eot_index.max()) + 1)
        if round_ > 0:
            costs.tokenize_s.append(tokenize_s)
            costs.truncated_s.append(truncated_s)
            costs.full_s.append(full_s)
            costs.served_s.append(served_s)
    return costs


def image_b64(size: int = 224) -> str:
    pixels = torch.randint(0, 256, (size, size, 3), generator=torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    Image.fromarray(pixels.to(torch.uint8).numpy()).save(buffer, format="JPEG", quality=90)
    return base64.b64encode(buffer.getvalue()).decode()


def request_latencies(url: str, fresh: FreshLabels, count: int, few: int, repeats: int) -> Latencies:
    image = image_b64()
    latencies = Latencies([], [], [])
    with httpx.Client(base_url=url, timeout=300) as client:

        def post(labels: list[str]) -> float:
            start = time.perf_counter()
            response = client.post("/classify", json={"images": [image], "labels": labels, "top_k": 5})
            seconds = time.perf_counter() - start
            response.raise_for_status()
            return seconds

        post(fresh.take(few))  # warm-up: connection, first request's lazy work
        for _ in range(repeats):
            labels = fresh.take(count)
            latencies.new_s.append(post(labels))
            latencies.cached_s.append(post(labels))
            latencies.few_cached_s.append(post(labels[:few]))
    return latencies


def serve_flags(args: argparse.Namespace) -> list[str]:
    return [
        *("--arch", args.arch, "--pretrained", args.pretrained, "--device", args.device),
        *("--max-labels", str(max(args.labels, 1000)), "--request-timeout-s", "300"),
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = os.getloadavg()[0]  # other work on the machine skews CPU figures; say how busy it was
    device = torch.device(args.device)
    pretrained = None if args.pretrained == "random" else args.pretrained
    precision = resolve_precision("auto", device)  # what the server picks for this device
    backbone = build_backbone(args.arch, pretrained, precision=precision, device=device)
    fresh = FreshLabels()
    costs = encoder_costs(backbone, fresh, args.labels, args.encoder_repeats)
    if costs.max_abs_diff > TOLERANCE[precision]:
        print(f"error: truncated and full text paths differ by {costs.max_abs_diff:.2e}", file=sys.stderr)
        return 1
    del backbone
    port = free_port()
    with ServerProcess(clipserve_command(port, *serve_flags(args)), port) as server:
        latencies = request_latencies(server.url, fresh, args.labels, args.few, args.repeats)
    if args.json is not None:
        figures = {"labels": args.labels, "precision": precision, **asdict(costs), **asdict(latencies)}
        args.json.write_text(json.dumps(figures, indent=1))
    section = render(args, precision, costs, latencies, load)
    print(section)
    if not args.no_write:
        replace_section(args.out, f"text-first-request:{device.type}", section)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
