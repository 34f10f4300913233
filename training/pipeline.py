"""`clipserve train` as a function: folder/CSV -> few-shot sample -> backbone + learner -> the
loop -> a servable checkpoint. One call per seed; each seed gets its own run directory."""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.backbone import Backbone, build_backbone
from models.checkpoint import save_checkpoint
from models.prompts import PromptLearner
from training.checkpoints import CHECKPOINT_FILE
from training.data import LabeledImages, load_dataset, sample_few_shot, select_subset
from training.distributed import DistContext, barrier, broadcast_parameters
from training.hparams import Hyperparameters, resolve
from training.learners import learner_config, method_class
from training.loop import LoopOptions, StepInfo, TrainResult, train
from training.state import fingerprint

log = logging.getLogger(__name__)

SPLIT_FILE = "split.json"
CONFIG_FILE = "config.json"


@dataclass
class TrainRequest:
    data: str
    out: str
    method: str = "coop"
    classnames: str | None = None
    # Classes with a name but no images (SHIP synthesises their features); appended to the label space.
    label_only_classes: list[str] = field(default_factory=list)
    shots: int | None = 16
    subset: str = "all"  # all | base | new
    seed: int = 1
    arch: str = "ViT-B-16-quickgelu"
    pretrained: str | None = "openai"
    backbone_seed: int = 0  # only for random weights
    precision: str = "auto"  # backbone weights: bf16 on CUDA, fp32 on CPU
    learner: dict[str, Any] = field(default_factory=dict)  # method config overrides
    hparams: dict[str, Any] = field(default_factory=dict)  # Hyperparameters overrides
    num_workers: int = 4
    progress: bool = True
    resume: bool = True
    cache_features: bool = True
    log_every: int = 20


def run_training(
    request: TrainRequest, ctx: DistContext, step_hook: Any = None, backbone: Backbone | None = None
) -> tuple[Path, TrainResult]:
    """Train one seed; returns the checkpoint path (written by the main process) and the result."""
    run_dir = Path(request.out)
    data, sample_record = prepare_data(request)
    backbone = backbone or build_backbone(
        request.arch, request.pretrained, _precision(request, ctx), ctx.device, request.backbone_seed
    )
    learner = build_learner(request, backbone, [*data.classnames, *request.label_only_classes], ctx)
    hparams = {
        stage: resolve(request.method, request.shots, request.hparams, stage)
        for stage in learner.training_stages
    }
    settings = run_settings(request, backbone, data, hparams, learner)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(run_dir / SPLIT_FILE, sample_record)
        _write_json(run_dir / CONFIG_FILE, {**settings, "versions": _versions()})
    barrier(ctx)
    result = train(learner, data, hparams, ctx, loop_options(request, fingerprint(settings), step_hook))
    path = run_dir / CHECKPOINT_FILE
    if ctx.is_main:
        save_checkpoint(
            path,
            learner.eval().serving_learner().to_checkpoint(provenance=provenance(run_dir, settings, result)),
        )
    barrier(ctx)
    return path, result


def loop_options(request: TrainRequest, run_fingerprint: str, step_hook: Any) -> LoopOptions:
    return LoopOptions(
        run_dir=Path(request.out),
        seed=request.seed,
        fingerprint=run_fingerprint,
        num_workers=request.num_workers,
        progress=request.progress,
        log_every=request.log_every,
        resume=request.resume,
        cache_features=request.cache_features,
        step_hook=step_hook,
    )


def provenance(run_dir: Path, settings: dict[str, Any], result: TrainResult) -> dict[str, Any]:
    """What the checkpoint header says about its origin; the image list itself is in split.json."""
    return {
        "run_dir": str(run_dir.resolve()),
        "settings": {k: v for k, v in settings.items() if k != "data"},
        "data_sha256": fingerprint({"data": settings["data"]}),
        "versions": _versions(),
        "result": _summary(result),
    }


def prepare_data(request: TrainRequest) -> tuple[LabeledImages, dict[str, Any]]:
    data = select_subset(load_dataset(request.data, request.classnames), request.subset)
    sampled, record = sample_few_shot(data, request.shots, request.seed)
    if not sampled.records:
        raise ValueError(f"{request.data}: no readable training images")
    summary = {
        "source": data.source,
        "subset": request.subset,
        "classes": data.keys,
        "classnames": data.classnames,
    }
    return sampled, {**summary, **record.to_dict()}


def build_learner(
    request: TrainRequest, backbone: Backbone, classnames: list[str], ctx: DistContext
) -> PromptLearner:
    # The seed fixes the learner's initialisation (e.g. CoOp's random context); rank 0's is broadcast.
    torch.manual_seed(request.seed)
    overrides = dict(request.learner)
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
    data: LabeledImages,
    hparams: dict[str, Hyperparameters],
    learner: PromptLearner,
) -> dict[str, Any]:
    """Everything that defines the run's result (and so the resume fingerprint). Library versions
    are recorded beside it, not in it: a resume after an upgrade is allowed."""
    return {
        "method": request.method,
        "learner_config": asdict(learner.config),
        "hparams": {stage: hp.to_dict() for stage, hp in hparams.items()},
        "backbone": backbone.identity.to_dict(),
        "seed": request.seed,
        "shots": request.shots,
        "subset": request.subset,
        "data": [[r.path, r.label] for r in data.records],
        "classnames": data.classnames,
        "cache_features": request.cache_features,
    }


def _versions() -> dict[str, str]:
    return {"torch": torch.__version__, "python": platform.python_version()}


def _precision(request: TrainRequest, ctx: DistContext) -> str:
    if request.precision != "auto":
        return request.precision
    # Frozen towers in bf16 on CUDA halve their memory traffic; learned tensors stay fp32.
    return "bf16" if ctx.device.type == "cuda" else "fp32"


def _summary(result: TrainResult) -> dict[str, Any]:
    return {"epochs_run": result.epochs_run, "steps": result.steps, "final_loss": result.final_loss}


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")


__all__ = ["CHECKPOINT_FILE", "StepInfo", "TrainRequest", "run_training"]
