"""`clipserve eval` as a function: load the checkpoints (checkpoints on one backbone share one built
copy of it), run the protocol's sets, write the report with the training curves beside it."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from models.backbone import Backbone, BackboneIdentity
from models.checkpoint import read_header
from models.prompts import PromptLearner
from training.checkpoints import find_checkpoints, metrics_beside
from training.data import LabeledImages, load_dataset
from training.evaluate import evaluate
from training.learners import backbone_for, load_learner, trained_weights_file
from training.protocols import Evaluation, run_protocol
from training.report import write_report
from training.requests import EvalRequest

log = logging.getLogger(__name__)


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
        header = read_header(path)
        if header.backbone not in backbones:
            recorded = trained_weights_file(header)
            backbones[header.backbone] = backbone_for(
                header.backbone, pretrained, device=device, recorded_file=recorded
            )
        learners.append(load_learner(path, backbones[header.backbone]))
    return learners


def load_targets(paths: list[str], classnames: list[str]) -> list[LabeledImages]:
    if classnames and len(classnames) != len(paths):
        raise ValueError(f"--target-classnames given {len(classnames)} times for {len(paths)} targets")
    files: list[str | None] = list(classnames) if classnames else [None] * len(paths)
    return [load_dataset(path, names) for path, names in zip(paths, files, strict=True)]


def _run_name(checkpoint: Path) -> str:
    return checkpoint.parent.name or str(checkpoint)
