"""`clipserve eval`: score trained checkpoints with one of the papers' protocols and write a
report (JSON, Markdown, PNG plots)."""

from __future__ import annotations

import argparse
import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from models.backbone import Backbone, BackboneIdentity
from models.checkpoint import read_header
from models.prompts import PromptLearner
from training.checkpoints import find_checkpoints, metrics_beside
from training.data import LabeledImages, load_dataset
from training.evaluate import evaluate
from training.learners import backbone_for, load_learner
from training.protocols import MODES, Evaluation, run_protocol
from training.report import write_report

log = logging.getLogger(__name__)


@dataclass
class EvalRequest:
    checkpoints: list[str]
    out: str
    mode: str = "few-shot"
    test: str | None = None
    classnames: str | None = None
    targets: list[str] = field(default_factory=list)
    target_classnames: list[str] = field(default_factory=list)
    pretrained: str | None = None
    device: str = "cpu"
    batch_size: int = 128
    num_workers: int = 4
    plots: bool = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument(
        "checkpoints",
        nargs="+",
        help="checkpoint files or run directories (one per seed; a run "
        "directory from `clipserve train --seeds ...` contributes all its seed_*/ checkpoints)",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="few-shot",
        help="few-shot: accuracy on --test, mean ± std "
        "over checkpoints. base-to-new: --test is split by sorted label (first ceil(n/2) = base); base "
        "and new scored in their own label spaces; harmonic mean. cross-dataset: the learned prompt "
        "on each --target's own class list. domain-shift: --test is the source, each --target a "
        "shifted set of (a subset of) the same classes. (default: %(default)s)",
    )
    parser.add_argument(
        "--test",
        metavar="PATH",
        help="test image folder or CSV manifest (few-shot, base-to-new; the source set for domain-shift)",
    )
    parser.add_argument(
        "--classnames",
        metavar="FILE",
        help="class-names file for --test (lines '<folder or label> <name>'); "
        "default: classnames.txt in the dataset's root, else the folder names",
    )
    parser.add_argument(
        "--target",
        dest="targets",
        metavar="PATH",
        action="append",
        default=[],
        help="a target image folder or CSV manifest (cross-dataset, domain-shift); repeat for several",
    )
    parser.add_argument(
        "--target-classnames",
        metavar="FILE",
        action="append",
        default=[],
        help="class-names file for each --target, in the same order (give none, or one per target)",
    )
    _output_arguments(parser)


def _output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="directory for report.json, report.md and the plots")
    parser.add_argument(
        "--pretrained",
        help="local backbone weights file, for checkpoints trained on weights "
        "identified by sha256 (open_clip tags and random test weights are rebuilt automatically)",
    )
    parser.add_argument("--device", default="cpu", help="torch device to evaluate on (default: %(default)s)")
    parser.add_argument(
        "--batch-size", type=int, default=128, help="images per forward pass (default: %(default)s)"
    )
    parser.add_argument(
        "--num-workers", type=int, default=4, help="image-decoding processes (default: %(default)s)"
    )
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    request = EvalRequest(**{k: v for k, v in vars(args).items() if k in EvalRequest.__dataclass_fields__})
    evaluation, report = run_evaluation(request)
    print(json.dumps({"report": str(report), "summary": evaluation.summary}, indent=1))
    return 0


def run_evaluation(request: EvalRequest) -> tuple[Evaluation, Path]:
    paths = find_checkpoints(request.checkpoints)
    learners = load_learners(paths, request.pretrained, request.device)
    test = load_dataset(request.test, request.classnames) if request.test else None
    targets = load_targets(request.targets, request.target_classnames)
    evaluator = functools.partial(evaluate, batch_size=request.batch_size, num_workers=request.num_workers)
    sets, summary, notes = run_protocol(
        request.mode, learners, test, targets, lambda learner, data: evaluator(learner, data)
    )
    evaluation = Evaluation(request.mode, [str(p) for p in paths], sets, summary, notes)
    metrics = {_run_name(p): m for p in paths if (m := metrics_beside(p)) is not None}
    return evaluation, write_report(evaluation, Path(request.out), metrics, plots=request.plots)


def load_learners(paths: list[Path], pretrained: str | None, device: str) -> list[PromptLearner]:
    """One learner per checkpoint; checkpoints on the same backbone share one built copy."""
    backbones: dict[BackboneIdentity, Backbone] = {}
    learners = []
    for path in paths:
        identity = read_header(path).backbone
        if identity not in backbones:
            backbones[identity] = backbone_for(identity, pretrained, device=device)
        learners.append(load_learner(path, backbones[identity]))
    return learners


def load_targets(paths: list[str], classnames: list[str]) -> list[LabeledImages]:
    if classnames and len(classnames) != len(paths):
        raise ValueError(f"--target-classnames given {len(classnames)} times for {len(paths)} targets")
    files: list[str | None] = list(classnames) if classnames else [None] * len(paths)
    return [load_dataset(path, names) for path, names in zip(paths, files, strict=True)]


def _run_name(checkpoint: Path) -> str:
    return checkpoint.parent.name or str(checkpoint)
