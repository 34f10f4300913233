"""CPU seconds per optimizer step of each training run of `make bench-methods`: the cost side of
the schedule rule in bench/methods_settings.py. Nothing is scored, and the backbone has random
weights of the world backbone's shape (weights do not change the cost), so no accuracy can
inform the rule.

    python bench/methods_cost.py            # a few minutes; prints one JSON line per run kind

Each run kind is trained for one seed at two epoch counts; the difference gives the cost of one
more epoch (steps plus the loop's per-epoch work), the rest is the run's fixed cost (sampling,
building the learner, caching features, writing the checkpoint). Methods whose step cost does
not depend on K (batch size fixed, image features recomputed each step: CoCoOp, MaPLe, GOPro)
are measured at a small K, where an epoch holds fewer steps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.methods_data import SetSpec, materialise
from bench.methods_runs import Runner
from bench.methods_settings import FULL, batches_per_epoch, condition, paper_schedule, stages
from models.backbone import build_backbone
from training.data import LabeledImages
from training.data.fewshot import Subset
from training.distributed import init_from_env
from training.pipeline import run_training
from training.world import World, WorldConfig

ARCH = "clipserve-demo-vit"
# (label, settings key, subset, K measured at, epoch counts): per-step cost of CoCoOp, MaPLe and
# GOPro is the same at every K (fixed batch; no cached features), so they are measured at K = 1.
KINDS: tuple[tuple[str, str, Subset, int, tuple[int, int]], ...] = (
    ("coop 64 K=1", "coop", "all", 1, (5, 50)),
    ("coop 64 K=2", "coop", "all", 2, (5, 50)),
    ("coop 64 K=4", "coop", "all", 4, (5, 30)),
    ("coop 64 K=8", "coop", "all", 8, (2, 20)),
    ("coop 64 K=16", "coop", "all", 16, (2, 12)),
    ("maple 64", "maple", "all", 1, (1, 10)),
    ("cocoop 64", "cocoop", "all", 1, (1, 6)),
    ("gopro 64", "gopro", "all", 1, (1, 4)),
    ("coop-b2n 32", "coop-b2n", "base", 16, (2, 20)),
    ("maple 32", "maple", "base", 1, (1, 10)),
    ("cocoop 32", "cocoop", "base", 1, (1, 6)),
    ("gopro 32", "gopro", "base", 1, (1, 4)),
    ("ship 32", "ship", "base", 16, (5, 30)),
)


def measure(runner: Runner, data: LabeledImages, kind: tuple[str, str, Subset, int, tuple[int, int]]) -> dict:
    label, key, subset, shots, epochs = kind
    seconds, steps = [], []
    label_only = data.classnames[32:] if key == "ship" else []  # the new classes, as the bench
    for count in epochs:
        request = runner.request(key, data, shots, subset, 1, f"-cost-e{count}")
        request.hparams = {**request.hparams, "epochs": count, "warmup_epochs": 0}
        request.label_only_classes = label_only
        begin = time.perf_counter()
        run_training(request, runner.ctx, backbone=runner.backbone)
        seconds.append(time.perf_counter() - begin)
        steps.append(result_steps(key, subset, shots, count))
    per_epoch = (seconds[1] - seconds[0]) / (epochs[1] - epochs[0])
    per_step = per_epoch / (steps[1] - steps[0]) * (epochs[1] - epochs[0])
    return {
        "run": label,
        "seconds_per_step": round(per_step, 4),
        "fixed_seconds": round(seconds[0] - per_epoch * epochs[0], 2),
        "steps_per_epoch": steps[0] // epochs[0],
        "measured": [round(s, 2) for s in seconds],
    }


def result_steps(key: str, subset: str, shots: int, epochs: int) -> int:
    """Optimizer steps of a run of `epochs` epochs in every stage (as the loop forms batches)."""
    images = (32 if subset == "base" else 64) * shots
    sizes = [paper_schedule(key, shots, stage).batch_size for stage in stages(key)]
    return sum(batches_per_epoch(images, size) for size in sizes) * epochs


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads, as the bench")
    parser.add_argument("--work", default="runs/bench-methods", help="the bench's work folder (its sets)")
    parser.add_argument("--only", nargs="*", help="run kinds whose label starts with one of these")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    backbone = build_backbone(ARCH, None, "fp32", "cpu", seed=0)  # random weights: cost only
    train = materialise(
        World(WorldConfig(seed=0)),
        SetSpec("train", "train", FULL.train_per_class, condition=condition()),
        Path(args.work) / "sets",
    )
    print(json.dumps({"load_before": os.getloadavg(), "threads": torch.get_num_threads()}), flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        runner = Runner(backbone, "random", Path(scratch), FULL, init_from_env("cpu"))
        for kind in KINDS:
            if args.only and not any(kind[0].startswith(p) for p in args.only):
                continue
            print(json.dumps({**measure(runner, train, kind), "load": os.getloadavg()[0]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
