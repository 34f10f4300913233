"""`clipserve pretrain`: pretrain a small CLIP backbone on the procedural world (training/world)
with symmetric InfoNCE, or with ProtoCLIP (InfoNCE + episodic k-means prototypes per modality,
prototype losses with soft targets, Prototypical Back Translation, an optional external teacher
given as precomputed features). Writes OUT/checkpoint.safetensors, a `backbone` checkpoint
loadable wherever --pretrained takes a file, with its zero-shot and linear-probe accuracy.

Rerun the same command to resume after an interruption (state.pt is written after every
episode), or with more --episodes to extend a finished run. Runs under torchrun (--batch-size
stays the global batch; a batch that does not divide evenly gives some processes one row more).
Output: checkpoint.safetensors, metrics.jsonl, state.pt, config.json.

Every option is declared once, in training/pretrain/config.py; its table compares the defaults
with the paper's."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from dataclasses import replace

from training.options import add_options, values_from_args
from training.pretrain.config import PRETRAIN_GROUP, PretrainConfig, RunOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    add_options(parser, PretrainConfig, ungrouped=PRETRAIN_GROUP)
    add_options(parser, RunOptions)


def config_from_args(args: argparse.Namespace) -> PretrainConfig:
    return PretrainConfig(**values_from_args(PretrainConfig, args))


def run(args: argparse.Namespace) -> int:
    import torch

    from training.distributed import init_from_env, shutdown
    from training.pretrain.run import run_pretraining

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options = replace(
        RunOptions(**values_from_args(RunOptions, args)), command=shlex.join(["clipserve", *sys.argv[1:]])
    )
    if options.threads:
        torch.set_num_threads(options.threads)
    ctx = init_from_env(options.device)
    try:
        path, result, scores = run_pretraining(config_from_args(args), ctx, options)
        if ctx.is_main:
            summary = {
                "checkpoint": str(path),
                "episodes_run": result.episodes_run,
                "final_loss": result.final_loss,
            }
            print(json.dumps({**summary, **scores}))
    finally:
        shutdown(ctx)
    return 0
