"""`clipserve train`: learn a prompt (CoOp, ...) from a folder of images and write a servable
checkpoint. Hyperparameters default to the method's published settings (methods.md §7); every
one can be overridden. Run under torchrun for several GPUs (--batch-size stays the global batch).

Output, per seed, in OUT/seed_<seed>/: checkpoint.safetensors (servable; the last epoch's weights,
or with --keep best those of the best validation epoch), metrics.jsonl, state.pt (rerun the same
command to resume; with more --epochs to extend a finished run), split.json (the few-shot draw and
the validation images), config.json (the options as given and what they resolved to).

Every option is declared once, in training/requests.py (and training/hparams.py)."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path

from training.checkpoints import SEED_DIR_PREFIX
from training.options import add_options, values_from_args
from training.requests import TRAIN_GROUPS, TrainRequest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    add_options(parser, TrainRequest, TRAIN_GROUPS)


def requests_from_args(args: argparse.Namespace) -> list[TrainRequest]:
    """One request per --seeds value, each in OUT/seed_<n> (its TensorBoard logs in DIR/seed_<n>)."""
    values = values_from_args(TrainRequest, args)
    seeds = values.pop("seed")
    base = TrainRequest(**{**values, "seed": seeds[0]})
    return [
        replace(
            base,
            seed=seed,
            out=str(Path(base.out) / f"{SEED_DIR_PREFIX}{seed}"),
            tensorboard=str(Path(base.tensorboard) / f"{SEED_DIR_PREFIX}{seed}")
            if base.tensorboard
            else None,
        )
        for seed in seeds
    ]


def run(args: argparse.Namespace) -> int:
    from training.distributed import init_from_env, shutdown
    from training.pipeline import run_training

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    requests = requests_from_args(args)
    ctx = init_from_env(requests[0].device)
    try:
        for request in requests:
            path, result = run_training(request, ctx)
            if ctx.is_main:
                summary = {
                    "seed": request.seed,
                    "checkpoint": str(path),
                    "status": "already complete" if result.already_complete else "trained",
                    "epochs_run": result.epochs_run,
                    "final_loss": result.final_loss,
                    "validation_accuracy": result.last_score,
                    "best": {"epoch": result.best.completed, "accuracy": result.best.score}
                    if result.best
                    else None,
                }
                print(json.dumps(summary))
    finally:
        shutdown(ctx)
    return 0
