"""`clipserve pretrain`: pretrain a small CLIP backbone on the procedural world (training/world)
with symmetric InfoNCE, or with ProtoCLIP (InfoNCE + episodic k-means prototypes per modality,
prototype losses with soft targets, Prototypical Back Translation, an optional external teacher
given as precomputed features). Writes OUT/checkpoint.safetensors, a `backbone` checkpoint
loadable wherever --pretrained takes a file, with its zero-shot and linear-probe accuracy.

Rerun the same command to resume after an interruption (state.pt is written after every
episode). Runs under torchrun (--batch-size stays the global batch; it must divide by the number
of processes). Output: checkpoint.safetensors, metrics.jsonl, state.pt, config.json.

Every setting of training/pretrain/config.py is an option; its table compares the defaults with
the paper's."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import torch

from training.distributed import init_from_env, shutdown
from training.pretrain.config import METHODS, PretrainConfig
from training.pretrain.run import SAVE_DTYPES, RunOptions, run_pretraining

HELP = {
    "method": "objective: protoclip (InfoNCE + prototype losses) or infonce (plain CLIP)",
    "arch": "open_clip architecture (the demo's: clipserve-demo-vit)",
    "init": "start from these weights (open_clip tag or local file) instead of random ones",
    "seed": "initialisation and episode draws",
    "world_seed": "the world's seed (which scenes exist)",
    "pool_size": "training-split samples rendered once; episodes draw from them with replacement",
    "sketch_fraction": "share of sketch-style samples in the pool",
    "episodes": "episodes to train (an episode is the unit of resume and of prototype rebuilding)",
    "episode_size": "samples per episode (steps per episode = episode_size // batch_size)",
    "batch_size": "GLOBAL batch size",
    "k": "clusters per modality; None means episode_size // 10, the paper's ratio",
    "target_temperature": "temperature of the soft prototype targets; <= 0 for hard labels",
    "pbt": "Prototypical Back Translation (--no-pbt: the other modality's raw centroids)",
    "infonce_warmup_episodes": "first episodes with InfoNCE only",
    "lit_episodes": "last episodes with InfoNCE only and the image tower frozen (LiT)",
    "teacher_features": "external teacher: .npy or .safetensors ('features') with one row per pool sample",
    "templates": "zero-shot templates, each with '{}'",
    "eval_per_class": "held-out images per class and style scored after every episode",
    "final_eval_per_class": "held-out images per class and style in the final scores",
    "probe_per_class": "training-split photos per class for the linear probe",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    group = parser.add_argument_group("pretraining (defaults: training/pretrain/config.py)")
    hints = typing.get_type_hints(PretrainConfig)
    for field in fields(PretrainConfig):
        _add_field(group, field.name, hints[field.name], field.default)
    run = parser.add_argument_group("run")
    run.add_argument("--out", required=True, help="run directory")
    run.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when available")
    run.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    run.add_argument("--num-workers", type=int, default=0, help="rendering processes (default: %(default)s)")
    run.add_argument("--pool-cache", type=Path, help="folder keeping rendered pools between runs")
    run.add_argument("--save-dtype", choices=sorted(SAVE_DTYPES), default="fp32", help="stored weights")
    run.add_argument("--no-resume", dest="resume", action="store_false", help="start over")
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    run.add_argument("--log-every", type=int, default=20, help="steps between metrics.jsonl step records")


def _add_field(group: argparse._ArgumentGroup, name: str, hint: Any, default: Any) -> None:
    flag = "--" + name.replace("_", "-")
    kwargs: dict[str, Any] = {"dest": name, "default": None if default is MISSING else default}
    text = HELP.get(name, "")
    if hint is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(hint) is tuple:
        element = typing.get_args(hint)[0]
        kwargs.update(type=element, nargs="+" if typing.get_args(hint)[-1] is Ellipsis else 2)
    else:
        options = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        kwargs["type"] = options[0]
    if name == "method":
        kwargs["choices"] = METHODS
    group.add_argument(flag, help=f"{text} (default: {default})".strip(), **kwargs)


def config_from_args(args: argparse.Namespace) -> PretrainConfig:
    values = {f.name: getattr(args, f.name) for f in fields(PretrainConfig)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return PretrainConfig(**values)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = init_from_env(args.device)
    options = RunOptions(
        out=Path(args.out),
        progress=args.progress,
        resume=args.resume,
        log_every=args.log_every,
        num_workers=args.num_workers,
        save_dtype=args.save_dtype,
        pool_cache=args.pool_cache,
        command=shlex.join(["clipserve", *sys.argv[1:]]),
    )
    try:
        path, result, scores = run_pretraining(config_from_args(args), ctx, options)
        if ctx.is_main:
            print(json.dumps({"checkpoint": str(path), "episodes_run": result.episodes_run, **scores}))
    finally:
        shutdown(ctx)
    return 0
