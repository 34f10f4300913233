"""Time the parts of a pretraining episode on this machine: one training step (InfoNCE, and
ProtoCLIP with prototypes), and ProtoCLIP's episode preparation (features of the episode, then
k-means per modality and PBT). Random pixels and tokens, so nothing is rendered.

    python bench/pretrain_step.py [--arch clipserve-demo-vit] [--episode 8192] [--k 819]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, like the Makefile

from models.backbone import build_backbone
from training.distributed import DistContext
from training.feeds import autocast
from training.pretrain.config import PretrainConfig
from training.pretrain.model import PretrainModel
from training.pretrain.prototypes import episode_prototypes
from training.pretrain.steps import StepBatch, build_optimizer, objective


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="clipserve-demo-vit")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--episode", type=int, default=8192)
    parser.add_argument("--k", type=int, default=819)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    backbone = build_backbone(args.arch, None, device=device)
    model = PretrainModel(backbone, heads=True).to(device)
    size = backbone.preprocessing.image_size
    batch = StepBatch(
        torch.randn(args.batch, 3, size, size, device=device),
        torch.randint(1, 1000, (args.batch, 16), device=device),
        torch.full((args.batch,), 15, device=device),
        torch.arange(args.batch, device=device),
        args.batch,
        0,
    )
    config = PretrainConfig(arch=args.arch, batch_size=args.batch, episode_size=args.episode, k=args.k)
    optimizer = build_optimizer(model, config, model.visual_parameters())
    ctx = DistContext(device=device)
    features = torch.randn(args.episode, config.proto_dim, device=device)
    features = torch.nn.functional.normalize(features, dim=1)
    protos = episode_prototypes(features, features.roll(1, 0), args.k, iterations=2, restarts=1)
    results = {"device": str(device), "arch": args.arch, "batch": args.batch}
    for name, targets in (("infonce_step_s", None), ("protoclip_step_s", protos)):
        results[name] = _timed(lambda t=targets: _step(model, optimizer, batch, t, config, ctx), args.steps)
    with torch.no_grad(), autocast(device):
        forward = _timed(lambda: model(batch.pixels, batch.tokens, batch.eot), args.steps)
    results["episode_features_s"] = forward * args.episode / args.batch
    started = time.perf_counter()
    episode_prototypes(features, features.roll(1, 0), args.k, iterations=20, restarts=3)
    results["kmeans_and_pbt_s"] = time.perf_counter() - started
    if device.type == "cuda":
        results["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    text = json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()})
    print(text)
    if args.json is not None:
        args.json.write_text(text)


def _step(model, optimizer, batch, protos, config, ctx) -> None:  # type: ignore[no-untyped-def]
    optimizer.zero_grad()
    with autocast(ctx.device):
        loss, _ = objective(model, batch, protos, config, ctx)
    loss.backward()
    optimizer.step()


def _timed(run, steps: int) -> float:  # type: ignore[no-untyped-def]
    run()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        run()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps


if __name__ == "__main__":
    main()
