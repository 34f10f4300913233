"""`clipserve train` as a function: folder/CSV -> validation split and few-shot sample -> backbone
+ learner -> the loop -> a servable checkpoint. One call per seed; each seed gets its own run
directory. What the run is given is a TrainRequest (training/requests.py), declared once."""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from models.backbone import Backbone, build_backbone
from models.checkpoint import save_checkpoint
from models.prompts import PromptLearner
from training.checkpoints import CHECKPOINT_FILE
from training.data import LabeledImages, load_dataset, sample_few_shot, select_subset
from training.data.heldout import align_classes, hold_out
from training.distributed import DistContext, barrier, broadcast_parameters
from training.hparams import Hyperparameters, resolve
from training.learners import learner_config, method_class, weights_file
from training.loop import LoopOptions, StepInfo, TrainResult, check_resume, train
from training.options import fingerprinted
from training.requests import TrainRequest
from training.runlog import require_tensorboard
from training.state import fingerprint
from training.validation import Validator

log = logging.getLogger(__name__)

SPLIT_FILE = "split.json"
CONFIG_FILE = "config.json"


@dataclass
class PreparedData:
    train: LabeledImages  # the few-shot sample
    validation: LabeledImages | None
    split: dict[str, Any]  # what split.json records


def run_training(
    request: TrainRequest, ctx: DistContext, step_hook: Any = None, backbone: Backbone | None = None
) -> tuple[Path, TrainResult]:
    """Train one seed; returns the checkpoint path (written by the main process) and the result."""
    check_request(request)
    run_dir = Path(request.out)
    data = prepare_data(request)
    backbone = backbone or build_backbone(
        request.arch, request.pretrained, _precision(request, ctx), ctx.device, request.backbone_seed
    )
    learner = build_learner(request, backbone, [*data.train.classnames, *request.label_only_classes], ctx)
    hparams = {
        stage: resolve(request.method, request.shots, request.hparams, stage)
        for stage in learner.training_stages
    }
    settings = run_settings(request, backbone, data, hparams, learner)
    options = loop_options(request, fingerprint(identity_of(settings)), data, step_hook)
    check_resume(options, [hp.epochs for hp in hparams.values()], list(hparams))  # refuse before writing
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(run_dir / SPLIT_FILE, data.split)
        _write_json(run_dir / CONFIG_FILE, run_config(request, settings))
    barrier(ctx)
    result = train(learner, data.train, hparams, ctx, options)
    path = run_dir / CHECKPOINT_FILE
    if ctx.is_main:
        write_checkpoint(path, learner, request, settings, result, data.validation)
    barrier(ctx)
    return path, result


def write_checkpoint(
    path: Path,
    learner: PromptLearner,
    request: TrainRequest,
    settings: dict[str, Any],
    result: TrainResult,
    validation: LabeledImages | None,
) -> None:
    """The servable checkpoint of the weights --keep chose, saying which epoch they are."""
    training = keep_weights(learner, request.keep, result, validation)
    provenance = checkpoint_provenance(request, settings, result, training)
    save_checkpoint(path, learner.eval().serving_learner().to_checkpoint(provenance=provenance))


def check_request(request: TrainRequest) -> None:
    """Refuse contradictory options before any work starts."""
    if request.val is not None and request.val_fraction:
        raise ValueError("give --val or --val-fraction, not both")
    if request.keep == "best" and request.val is None and not request.val_fraction:
        raise ValueError("--keep best needs a validation set: --val PATH or --val-fraction F")
    if request.val_every < 1:
        raise ValueError(f"--val-every must be >= 1, got {request.val_every}")
    if request.tensorboard is not None:
        require_tensorboard()


def loop_options(
    request: TrainRequest, run_fingerprint: str, data: PreparedData, step_hook: Any
) -> LoopOptions:
    """The loop's options are the request's of the same name (one declaration, no copying by hand)."""
    names = {f.name for f in fields(LoopOptions)} & {f.name for f in fields(TrainRequest)}
    validator = None
    if data.validation is not None:
        validator = Validator(data.validation, request.val_every, request.num_workers)
    return LoopOptions(
        run_dir=Path(request.out),
        fingerprint=run_fingerprint,
        validator=validator,
        step_hook=step_hook,
        **{name: getattr(request, name) for name in names},
    )


def prepare_data(request: TrainRequest) -> PreparedData:
    data = select_subset(load_dataset(request.data, request.classnames), request.subset)
    validation = None
    if request.val_fraction:
        data, validation = hold_out(data, request.val_fraction)
    elif request.val is not None:
        validation = align_classes(load_dataset(request.val, request.classnames), data)
    sampled, record = sample_few_shot(data, request.shots, request.seed)
    if not sampled.records:
        raise ValueError(f"{request.data}: no readable training images")
    split = {
        "source": data.source,
        "subset": request.subset,
        "classes": data.keys,
        "classnames": data.classnames,
        **record.to_dict(),
        "validation": _records(validation) if validation is not None else None,
        "validation_source": validation.source if validation is not None else None,
    }
    return PreparedData(sampled, validation, split)


def build_learner(
    request: TrainRequest, backbone: Backbone, classnames: list[str], ctx: DistContext
) -> PromptLearner:
    # The seed fixes the learner's initialisation (e.g. CoOp's random context); rank 0's is broadcast.
    torch.manual_seed(request.seed)
    overrides = dict(request.learner)
    overrides.update(
        {k: v for k, v in (("n_ctx", request.n_ctx), ("ctx_init", request.ctx_init)) if v is not None}
    )
    if request.label_only_classes:
        # Only methods whose config has this field accept it; learner_config names the fields otherwise.
        overrides["label_only_classes"] = list(request.label_only_classes)
    config = learner_config(request.method, overrides)
    learner = method_class(request.method)(backbone, classnames, config).to(ctx.device)
    broadcast_parameters(learner, ctx)
    return learner


def run_settings(
    request: TrainRequest,
    backbone: Backbone,
    data: PreparedData,
    hparams: dict[str, Hyperparameters],
    learner: PromptLearner,
) -> dict[str, Any]:
    """Everything that defines the run's result: the options declared with fingerprint=True, and
    what the rest resolve to (method config, hyperparameters per stage, backbone identity, the
    images). Library versions are recorded beside it, not in it: a resume after an upgrade is allowed."""
    return {
        **fingerprinted(request),
        "learner_config": asdict(learner.config),
        "hparams": {stage: hp.to_dict() for stage, hp in hparams.items()},
        "backbone": backbone.identity.to_dict(),
        "data": _records(data.train),
        "classnames": data.train.classnames,
        "validation": _records(data.validation) if data.validation is not None else None,
    }


def identity_of(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings without the epochs per stage: a finished run given more epochs is the same run."""
    hparams = {
        stage: {k: v for k, v in hp.items() if k != "epochs"} for stage, hp in settings["hparams"].items()
    }
    return {**settings, "hparams": hparams}


def run_config(request: TrainRequest, settings: dict[str, Any]) -> dict[str, Any]:
    """config.json: the options as given, what they resolved to, and the versions that ran them."""
    resolved = {k: v for k, v in settings.items() if k not in ("data", "validation")}
    return {"options": asdict(request), "resolved": resolved, "versions": _versions()}


def keep_weights(
    learner: PromptLearner, keep: str, result: TrainResult, validation: LabeledImages | None
) -> dict[str, Any]:
    """Load the weights the checkpoint keeps into `learner`; returns what the header says of them."""
    best = result.best
    accuracy: float | None
    if keep == "best" and best is None:
        log.warning("--keep best: no validation accuracy was recorded; the checkpoint keeps the last epoch")
    if keep == "best" and best is not None:
        learner.load_state_dict(best.tensors)
        epoch, accuracy, kept = best.completed, best.score, "best"
    else:
        epoch, accuracy, kept = result.planned[-1], result.last_score, "last"
    stages = list(learner.training_stages)
    return {
        "keep": kept,
        "stage": stages[-1],
        "epoch": epoch,  # epochs of the last stage trained when these weights were taken
        "epochs": result.planned[-1],
        "final_loss": result.final_loss,
        "validation": None
        if validation is None
        else {"accuracy": accuracy, "source": validation.source, "images_listed": len(validation)},
    }


def checkpoint_provenance(
    request: TrainRequest, settings: dict[str, Any], result: TrainResult, training: dict[str, Any]
) -> dict[str, Any]:
    """What the checkpoint header says about its origin; the image lists themselves are in split.json."""
    return {
        "run_dir": str(Path(request.out).resolve()),
        "settings": {k: v for k, v in settings.items() if k not in ("data", "validation")},
        "data_sha256": fingerprint({"data": settings["data"]}),
        "backbone_file": weights_file(request.pretrained),
        "training": training,
        "versions": _versions(),
        "result": {"epochs_run": result.epochs_run, "steps": result.steps, "final_loss": result.final_loss},
    }


def _records(data: LabeledImages) -> list[list[Any]]:
    return [[r.path, r.label] for r in data.records]


def _versions() -> dict[str, str]:
    return {"torch": torch.__version__, "python": platform.python_version()}


def _precision(request: TrainRequest, ctx: DistContext) -> str:
    if request.precision != "auto":
        return request.precision
    # Frozen towers in bf16 on CUDA halve their memory traffic; learned tensors stay fp32.
    return "bf16" if ctx.device.type == "cuda" else "fp32"


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")


__all__ = ["CHECKPOINT_FILE", "StepInfo", "TrainRequest", "run_training"]
