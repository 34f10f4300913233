"""`clipserve train`: learn a prompt (CoOp, ...) from a folder of images and write a servable
checkpoint. Hyperparameters default to the method's published settings (methods.md §7); every
one can be overridden. Run under torchrun for several GPUs (--batch-size stays the global batch).

Output, per seed, in OUT/seed_<seed>/: checkpoint.safetensors (servable), metrics.jsonl,
state.pt (resumable; rerun the same command to resume), split.json (the few-shot draw),
config.json (everything that defines the run)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from models.prompts import METHODS
from training.checkpoints import SEED_DIR_PREFIX
from training.data.fewshot import SUBSETS
from training.data.transforms import AUGMENTATIONS
from training.distributed import init_from_env, shutdown
from training.hparams import OPTIMIZERS, SCHEDULERS
from training.learners import parse_assignments
from training.pipeline import TrainRequest, run_training

log = logging.getLogger(__name__)

HPARAM_OPTIONS = (
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "weight_decay",
    "momentum",
    "scheduler",
    "warmup_epochs",
    "warmup_lr",
    "max_grad_norm",
    "augment",
    "rrc_scale",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    _data_arguments(parser.add_argument_group("data"))
    _method_arguments(parser.add_argument_group("method"))
    _backbone_arguments(parser.add_argument_group("backbone"))
    _hparam_arguments(parser.add_argument_group("hyperparameters (default: the method's published settings)"))
    _run_arguments(parser.add_argument_group("run"))


def _data_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--data",
        required=True,
        metavar="PATH",
        help="training images: a folder with one sub-folder per class, "
        "or a CSV manifest of 'path,label' rows (paths relative to the CSV)",
    )
    group.add_argument(
        "--classnames",
        metavar="FILE",
        help="class-names file, lines '<folder or label> <display name>'; its line "
        "order is the label order. Default: classnames.txt in the data root, else the folder "
        "names/labels sorted (underscores read as spaces)",
    )
    group.add_argument(
        "--label-only-classes",
        nargs="+",
        default=[],
        metavar="NAME",
        help="class names with no training images, added after the data's classes (SHIP "
        "synthesises their features; other methods reject them)",
    )
    group.add_argument(
        "--shots",
        type=int,
        default=16,
        help="K training images per class, drawn with each seed "
        "(unreadable images are skipped and replaced); 0 = all images (default: %(default)s)",
    )
    group.add_argument(
        "--subset",
        choices=SUBSETS,
        default="all",
        help="train on all classes, or on the base "
        "half (first ceil(n/2) sorted labels) for base-to-new evaluation (default: %(default)s)",
    )
    group.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[1],
        help="one run per seed (few-shot draw, "
        "initialisation, order, augmentation), each in OUT/seed_<n> (default: 1)",
    )


def _method_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--method",
        choices=sorted(METHODS),
        default="coop",
        help="prompt-learning method (default: %(default)s)",
    )
    group.add_argument(
        "--n-ctx", type=int, help="number of learned context tokens (method default otherwise)"
    )
    group.add_argument(
        "--ctx-init",
        help="initialise the context from these words, e.g. 'a photo of a' "
        "(then n_ctx is at most their token count)",
    )
    group.add_argument(
        "--set",
        dest="method_config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other field of the method's config, e.g. --set class_specific=true "
        "--set position=middle (values parsed as JSON where possible); repeatable",
    )


def _backbone_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--arch",
        default="ViT-B-16-quickgelu",
        help="open_clip architecture; use the -quickgelu variants with OpenAI weights (default: %(default)s)",
    )
    group.add_argument(
        "--pretrained",
        default="openai",
        help="open_clip pretrained tag, a local weights file, "
        "or 'random' (tests and benchmarks only) (default: %(default)s)",
    )
    group.add_argument("--backbone-seed", type=int, default=0, help="seed of random backbone weights")
    group.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="auto",
        help="weights "
        "of the frozen backbone; auto = bf16 on CUDA, fp32 on CPU. Learned tensors are always "
        "fp32, with bf16 autocast on CUDA (default: %(default)s)",
    )
    group.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        help="default: cuda when available; under torchrun each process takes the GPU of its LOCAL_RANK",
    )


def _hparam_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--epochs",
        type=int,
        help="training epochs (CoOp: 50/100/100/200/200 for 1/2/4/8/16 shots; use 50 for ImageNet)",
    )
    group.add_argument("--batch-size", type=int, help="GLOBAL batch size, split over processes")
    group.add_argument("--optimizer", choices=OPTIMIZERS, help="sgd (momentum, Dassl) or adamw")
    group.add_argument("--lr", type=float, help="base learning rate (CoOp 0.002, MaPLe 0.0035)")
    group.add_argument("--weight-decay", type=float, help="weight decay, applied to the prompts too (5e-4)")
    group.add_argument("--momentum", type=float, help="SGD momentum (0.9)")
    group.add_argument("--scheduler", choices=SCHEDULERS, help="per-epoch lr schedule after warmup (cosine)")
    group.add_argument("--warmup-epochs", type=int, help="epochs at the constant warmup lr (1)")
    group.add_argument("--warmup-lr", type=float, help="the constant warmup lr (1e-5)")
    group.add_argument(
        "--max-grad-norm",
        type=float,
        help="clip the global gradient norm to this (off by default, as in the reference code)",
    )
    group.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        help="rrc_flip: random resized crop + flip (Dassl); "
        "flip: flip only; none: eval preprocessing, and stock image features are then computed "
        "once and cached when the method allows",
    )
    group.add_argument(
        "--rrc-scale",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="random-resized-crop area range (0.08 1.0)",
    )


def _run_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--out", required=True, help="run directory (one seed_<n> folder per seed)")
    group.add_argument(
        "--num-workers",
        type=int,
        default=4,
        help="image-decoding processes per training process (default: %(default)s)",
    )
    group.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="start over even if OUT holds a "
        "resumable state (by default an interrupted run continues from its last finished epoch)",
    )
    group.add_argument(
        "--no-cache-features",
        dest="cache_features",
        action="store_false",
        help="never cache image features, even with --augment none",
    )
    group.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    group.add_argument(
        "--log-every",
        type=int,
        default=20,
        help="write a metrics.jsonl step record every N "
        "steps (epochs are always recorded) (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ctx = init_from_env(args.device)
    try:
        for seed in args.seeds:
            path, result = run_training(request_from_args(args, seed), ctx)
            if ctx.is_main:
                print(
                    json.dumps(
                        {
                            "seed": seed,
                            "checkpoint": str(path),
                            "epochs_run": result.epochs_run,
                            "final_loss": result.final_loss,
                        }
                    )
                )
    finally:
        shutdown(ctx)
    return 0


def request_from_args(args: argparse.Namespace, seed: int) -> TrainRequest:
    learner = parse_assignments(args.method_config)
    learner.update({k: v for k, v in (("n_ctx", args.n_ctx), ("ctx_init", args.ctx_init)) if v is not None})
    return TrainRequest(
        data=args.data,
        out=str(Path(args.out) / f"{SEED_DIR_PREFIX}{seed}"),
        method=args.method,
        classnames=args.classnames,
        label_only_classes=list(args.label_only_classes),
        shots=args.shots or None,
        subset=args.subset,
        seed=seed,
        arch=args.arch,
        pretrained=args.pretrained,
        backbone_seed=args.backbone_seed,
        precision=args.precision,
        learner=learner,
        hparams={name: getattr(args, name) for name in HPARAM_OPTIONS},
        num_workers=args.num_workers,
        progress=args.progress,
        resume=args.resume,
        cache_features=args.cache_features,
        log_every=args.log_every,
    )
