"""What `clipserve train`, `eval` and `export` accept, declared once (training/options.py): each
field is the library's parameter, the command-line option with its help, and (fingerprint=True)
part of what defines a training run's result. No torch import: `--help` stays quick.

The hyperparameter options come from training/hparams.py (Hyperparameters), the pretraining
options from training/pretrain/config.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from models.defaults import DEFAULT_ARCH, DEFAULT_PRETRAINED
from training.data.fewshot import Subset
from training.hparams import Hyperparameters
from training.options import option, parse_assignments

# models/prompts METHODS, by name (tests/training/test_options.py keeps the two equal); named here
# so that declaring the options does not import the methods (and torch).
PROMPT_METHODS = ("cocoop", "coop", "gopro", "maple", "ship")
Keep = Literal["last", "best"]
EvalMode = Literal["few-shot", "base-to-new", "cross-dataset", "domain-shift"]  # training/protocols.py
HPARAMS_GROUP = "hyperparameters (default: the method's published settings)"
TRAIN_GROUPS = ("data", "validation", "method", "backbone", HPARAMS_GROUP, "run")
PRETRAINED_HELP = (
    "the backbone weights file, when it is no longer where the checkpoint was trained from "
    "(open_clip tags, random test weights and a weights file still at its recorded path are "
    "found without it); a file with other weights is refused"
)


def _shots(value: int) -> int | None:
    return value or None  # 0 on the command line: every image


@dataclass
class TrainRequest:
    """One training run (one seed) of `clipserve train`; `out` is that run's directory."""

    data: str = option(
        "training images: a folder with one sub-folder per class, or a CSV manifest of "
        "'path,label' rows (paths relative to the CSV)",
        group="data",
        metavar="PATH",
    )
    out: str = option("run directory; `clipserve train` runs each seed in OUT/seed_<n>", group="run")
    classnames: str | None = option(
        "class-names file, lines '<folder or label> <display name>'; its line order is the label "
        "order. Default: classnames.txt in the data root, else the folder names/labels sorted "
        "(underscores read as spaces)",
        None,
        group="data",
        metavar="FILE",
    )
    label_only_classes: list[str] = option(
        "class names with no training images, added after the data's classes (SHIP synthesises "
        "their features; other methods reject them)",
        default_factory=list,
        group="data",
        fingerprint=True,
        metavar="NAME",
    )
    shots: int | None = option(
        "K training images per class, drawn with each seed (unreadable images are skipped and "
        "replaced); 0 = all images",
        16,
        group="data",
        fingerprint=True,
        from_cli=_shots,
    )
    subset: Subset = option(
        "train on all classes, or on the base half (first ceil(n/2) sorted labels) for "
        "base-to-new evaluation",
        "all",
        group="data",
        fingerprint=True,
    )
    seed: int = option(
        "one run per seed (few-shot draw, initialisation, order, augmentation), each in OUT/seed_<n>",
        1,
        group="data",
        flag="--seeds",
        fingerprint=True,
        nargs="+",
        cli_default=[1],
    )
    val: str | None = option(
        "validation images (folder or CSV manifest) of the training classes, scored during "
        "training; images of other classes are left out",
        None,
        group="validation",
        metavar="PATH",
    )
    val_fraction: float = option(
        "instead of --val: hold out this share of each class of --data for validation (chosen "
        "before the few-shot draw, the same images for every seed)",
        0.0,
        group="validation",
    )
    val_every: int = option(
        "score the validation set every N epochs, and always after the last one",
        1,
        group="validation",
        fingerprint=True,
        metavar="N",
    )
    keep: Keep = option(
        "the weights the checkpoint holds: the last epoch's (as the papers report), or those of "
        "the epoch with the best validation accuracy (needs --val or --val-fraction)",
        "last",
        group="validation",
    )
    method: str = option(
        "prompt-learning method", "coop", group="method", fingerprint=True, choices=PROMPT_METHODS
    )
    n_ctx: int | None = option(
        "number of learned context tokens (method default otherwise); same as --set n_ctx=N",
        None,
        group="method",
    )
    ctx_init: str | None = option(
        "initialise the context from these words, e.g. 'a photo of a' (then n_ctx is at most their "
        "token count); same as --set ctx_init=...",
        None,
        group="method",
    )
    learner: dict[str, Any] = option(
        "any field of the method's config, e.g. --set class_specific=true --set position=middle "
        "(values parsed as JSON where possible); repeatable",
        default_factory=dict,
        group="method",
        flag="--set",
        action="append",
        metavar="KEY=VALUE",
        cli_default=[],
        from_cli=parse_assignments,
    )
    arch: str = option(
        "open_clip architecture; use the -quickgelu variants with OpenAI weights",
        DEFAULT_ARCH,
        group="backbone",
    )
    pretrained: str | None = option(
        "open_clip pretrained tag, a local weights file, or 'random' (tests and benchmarks only)",
        DEFAULT_PRETRAINED,
        group="backbone",
    )
    backbone_seed: int = option("seed of random backbone weights", 0, group="backbone")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = option(
        "weights of the frozen backbone; auto = bf16 on CUDA, fp32 on CPU. Learned tensors are "
        "always fp32, with bf16 autocast on CUDA",
        "auto",
        group="backbone",
    )
    device: Literal["cuda", "cpu"] | None = option(
        "default: cuda when available; under torchrun each process takes the GPU of its LOCAL_RANK",
        None,
        group="backbone",
    )
    hparams: dict[str, Any] = option(
        "overrides of the method's published hyperparameters",
        default_factory=dict,
        group=HPARAMS_GROUP,
        expand=Hyperparameters,
    )
    num_workers: int = option("image-decoding processes per training process", 4, group="run")
    resume: bool = option(
        "continue an interrupted run from its last finished epoch, or a finished one given more "
        "--epochs; --no-resume starts over",
        True,
        group="run",
    )
    cache_features: bool = option(
        "cache stock image features when nothing is augmented (--augment none) and the method allows",
        True,
        group="run",
        fingerprint=True,
    )
    progress: bool = option("progress bar, one line per finished epoch", True, group="run")
    log_every: int = option(
        "write a metrics.jsonl step record every N steps (epochs are always recorded)",
        20,
        group="run",
        metavar="N",
    )
    tensorboard: str | None = option(
        "also write TensorBoard logs (loss, lr, validation accuracy, step time) here; "
        "`clipserve train` writes each seed to DIR/seed_<n>. Needs the tensorboard package",
        None,
        group="run",
        metavar="DIR",
    )


@dataclass
class EvalRequest:
    """`clipserve eval`: score checkpoints with one of the papers' protocols."""

    checkpoints: list[str] = option(
        "checkpoint files or run directories (one per seed; a run directory from `clipserve "
        "train --seeds ...` contributes all its seed_*/ checkpoints)",
        flag="positional",
    )
    out: str = option("directory for report.json, report.md and the plots")
    mode: EvalMode = option(
        "few-shot: accuracy on --test, mean ± std over checkpoints. base-to-new: --test is split by "
        "sorted label (first ceil(n/2) = base); base and new scored in their own label spaces; "
        "harmonic mean. cross-dataset: the learned prompt on each --target's own class list. "
        "domain-shift: --test is the source, each --target a shifted set of (a subset of) the "
        "same classes",
        "few-shot",
    )
    test: str | None = option(
        "test image folder or CSV manifest (few-shot, base-to-new; the source set for domain-shift)",
        None,
        metavar="PATH",
    )
    classnames: str | None = option(
        "class-names file for --test (lines '<folder or label> <name>'); default: classnames.txt in "
        "the dataset's root, else the folder names",
        None,
        metavar="FILE",
    )
    targets: list[str] = option(
        "a target image folder or CSV manifest (cross-dataset, domain-shift); repeat for several",
        default_factory=list,
        flag="--target",
        action="append",
        metavar="PATH",
    )
    target_classnames: list[str] = option(
        "class-names file for each --target, in the same order (give none, or one per target)",
        default_factory=list,
        action="append",
        metavar="FILE",
    )
    pretrained: str | None = option(PRETRAINED_HELP, None)
    device: str = option("torch device to evaluate on", "cpu")
    batch_size: int = option("images per forward pass", 128)
    num_workers: int = option("image-decoding processes", 4)
    plots: bool = option("the PNG plots (--no-plots skips them)", True)


@dataclass
class ExportRequest:
    """`clipserve export`: a servable checkpoint with eval results, and the encoder as ONNX."""

    checkpoint: str = option(
        "a checkpoint written by `clipserve train`, or its run directory", flag="positional"
    )
    out: str = option(
        "path of the exported .safetensors checkpoint (written atomically: a directory watcher "
        "never sees half a file)"
    )
    report: str | None = option(
        "report.json from `clipserve eval`; its mode, summary and per-set accuracies go into the "
        "checkpoint header",
        None,
    )
    onnx: str | None = option(
        "also write the image encoder as ONNX here (fp32, dynamic batch axis; input 'pixels' "
        "[batch, 3, S, S] preprocessed, output 'embeddings' [batch, D] normalised). Methods that "
        "change the image side (MaPLe) export their prompted encoder",
        None,
    )
    check_onnx: bool = option(
        "compare ONNX Runtime (CPU) with torch; a difference above 1e-3 is an error",
        True,
        flag="--onnx-check",
    )
    pretrained: str | None = option(PRETRAINED_HELP, None)
