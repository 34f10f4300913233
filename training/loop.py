"""THE training loop, for every method: it only talks to the prompt-learner interface.

Per stage (the learner's `training_stages`; see models/prompts/base.py): an optimiser over the
learnable tensors, then epochs of steps. A step is `learner.loss(batch)` under bf16 autocast on
CUDA (fp32 master tensors), backward, the gradient all-reduce when several processes run,
optional clipping, and the optimiser step. The lr is set per epoch (Dassl's schedule), or every
step along the same curve when the stage's `schedule_unit` is "step" (SHIP's CoOp stage). After an
epoch of the last stage the validation set is scored when due (training/validation.py), and the
resumable state is written atomically (training/state.py): a killed run resumed from it ends
with the same tensors, records and best epoch as an uninterrupted run, and a finished run given
more epochs continues from it with the schedule re-planned.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from models.prompts import PromptLearner
from training.data.dataset import Skipped
from training.data.sources import LabeledImages
from training.distributed import DistContext, barrier, reduce_step
from training.feeds import FeatureFeed, ImageFeed, LocalBatch, autocast, use_cached_features
from training.hparams import Hyperparameters
from training.optim import (
    build_optimizer,
    epoch_schedule,
    optimizer_spec,
    set_learning_rate,
    step_schedule,
)
from training.options import default_of
from training.progress import EpochMeter, Progress
from training.requests import TrainRequest
from training.runlog import RunLog
from training.state import STATE_FILE, Best, ResumePoint, RunState, load_state, resume_point, save_state
from training.validation import Validator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepInfo:
    stage_index: int
    epoch: int
    step: int  # within the epoch
    loss: float
    count: int  # images in the global batch


@dataclass
class LoopOptions:
    """How the loop runs; the defaults are `clipserve train`'s (training/requests.py)."""

    run_dir: Path
    seed: int = default_of(TrainRequest, "seed")
    fingerprint: str = ""  # of the run's settings; a state file from other settings is refused
    num_workers: int = default_of(TrainRequest, "num_workers")
    progress: bool = default_of(TrainRequest, "progress")
    log_every: int = default_of(TrainRequest, "log_every")
    resume: bool = default_of(TrainRequest, "resume")
    cache_features: bool = default_of(TrainRequest, "cache_features")
    tensorboard: str | Path | None = default_of(TrainRequest, "tensorboard")
    validator: Validator | None = None  # scored in the last stage (the one whose learner is served)
    step_hook: Callable[[StepInfo], None] | None = None  # the benchmark's timer; tests' "kill"


@dataclass
class TrainResult:
    epochs_run: int = 0  # in this call
    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    final_loss: float = float("nan")  # mean loss of the run's last epoch, even when this call ran none
    step_seconds: list[float] = field(default_factory=list)
    used_cached_features: bool = False
    already_complete: bool = False  # the state said the run was finished: nothing ran
    notes: list[str] = field(default_factory=list)  # re-planning, said at the start
    planned: list[int] = field(default_factory=list)  # epochs per stage
    last_score: float | None = None  # validation accuracy after the last epoch (main process)
    best: Best | None = None  # the best validation accuracy and its tensors (main process)


@dataclass
class StageRun:
    learner: PromptLearner
    hp: Hyperparameters
    ctx: DistContext
    options: LoopOptions
    log: RunLog
    stage_index: int
    stage: str
    last_stage: bool
    result: TrainResult
    global_step: int
    reported: set[str] = field(default_factory=set)


def train(
    learner: PromptLearner,
    data: LabeledImages,
    hparams: dict[str, Hyperparameters],
    ctx: DistContext,
    options: LoopOptions,
) -> TrainResult:
    """Train, resume or extend every stage of `learner` on `data`; returns what ran in this call."""
    options.run_dir.mkdir(parents=True, exist_ok=True)
    stages = list(learner.training_stages)
    result = TrainResult(planned=[hparams[stage].epochs for stage in stages])
    state, point = check_resume(options, result.planned, stages)
    run_log = RunLog(options.run_dir, "epoch", ctx.is_main, options.tensorboard)
    run_log.begin(state, images=len(data), classes=len(data.keys), world_size=ctx.world_size)
    global_step = _restore(learner, state, result)
    run_log.standing(point, result.planned, result.final_loss)
    result.notes, result.already_complete = list(point.notes), point.is_complete(result.planned)
    try:
        for index in range(point.stage_index, 0 if result.already_complete else len(stages)):
            learner.set_stage(stages[index])
            run = StageRun(
                learner, hparams[stages[index]], ctx, options, run_log, index, stages[index],
                last_stage=index == len(stages) - 1, result=result, global_step=global_step,
            )  # fmt: skip
            first = point.completed if index == point.stage_index else 0
            resumed = state.optimizer if state is not None and state.stage_index == index else None
            global_step = run_stage(run, data, first, resumed)
    finally:
        run_log.close()
    return result


def check_resume(
    options: LoopOptions, planned: list[int], stages: list[str]
) -> tuple[RunState | None, ResumePoint]:
    """The saved state (when resuming) and where the run continues under `planned` epochs per
    stage; raises when the state belongs to other settings or the plan would shrink the run."""
    state = load_state(options.run_dir / STATE_FILE, options.fingerprint) if options.resume else None
    return state, resume_point(state, planned, stages)


def _restore(learner: PromptLearner, state: RunState | None, result: TrainResult) -> int:
    if state is None:
        return 0
    learner.load_state_dict(state.tensors)
    result.final_loss, result.last_score, result.best = state.last_loss, state.last_score, state.best
    return state.global_step


def run_stage(run: StageRun, data: LabeledImages, first_epoch: int, optimizer_state: dict | None) -> int:
    """Epochs first_epoch.. of one stage; returns the run's optimiser steps so far."""
    params = run.learner.trainable_parameters()
    optimizer = build_optimizer(params, optimizer_spec(run.hp))
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    feed = make_feed(run, data)
    for epoch in range(first_epoch, run.hp.epochs):
        run_epoch(run, feed, optimizer, params, epoch)
        if run.ctx.is_main:
            save_state(run.options.run_dir / STATE_FILE, snapshot(run, optimizer, epoch + 1))
        barrier(run.ctx)  # no rank starts the next epoch before the state is on disk
    return run.global_step


def snapshot(run: StageRun, optimizer: torch.optim.Optimizer, completed: int) -> RunState:
    return RunState(
        fingerprint=run.options.fingerprint,
        unit="epoch",
        stage_index=run.stage_index,
        completed=completed,
        planned=run.result.planned,
        global_step=run.global_step,
        last_loss=run.result.final_loss,
        tensors={k: v.detach().cpu() for k, v in run.learner.state_dict().items()},
        optimizer=optimizer.state_dict(),
        best=run.result.best,
        last_score=run.result.last_score,
    )


def make_feed(run: StageRun, data: LabeledImages) -> ImageFeed | FeatureFeed:
    if use_cached_features(run.learner, run.hp, run.options.cache_features):
        run.result.used_cached_features = True
        feed = FeatureFeed(run.learner, data, run.hp, run.ctx, run.options.seed)
        report_skipped(run, feed.skipped)
        return feed
    return ImageFeed(run.learner, data, run.hp, run.ctx, run.options.seed, run.options.num_workers)


def run_epoch(
    run: StageRun, feed: ImageFeed | FeatureFeed, optimizer: torch.optim.Optimizer, params: list, epoch: int
) -> None:
    per_step = run.hp.schedule_unit == "step"
    schedule = step_schedule(run.hp, len(feed)) if per_step else epoch_schedule(run.hp)
    lr = schedule.at(epoch * len(feed) if per_step else epoch)
    set_learning_rate(optimizer, lr)
    run.learner.train()
    show = run.options.progress and run.ctx.is_main
    progress = Progress(len(feed), f"{run.stage} epoch {epoch + 1}/{run.hp.epochs}", show)
    meter = EpochMeter(torch.zeros((), device=run.ctx.device))
    for step, local in enumerate(feed.epoch(epoch)):
        step_started = time.perf_counter()
        report_skipped(run, local.skipped)
        if per_step:
            lr = schedule.at(epoch * len(feed) + step)
            set_learning_rate(optimizer, lr)
        loss, count = train_step(run, optimizer, params, local)
        run.global_step += 1
        if count:
            meter.loss_total, meter.images = meter.loss_total + loss * count, meter.images + count
        if (step + 1) % run.options.log_every == 0 or run.options.step_hook is not None:
            log_step(run, progress, StepInfo(run.stage_index, epoch, step, float(loss), count), lr, meter)
        progress.advance()
        run.result.step_seconds.append(time.perf_counter() - step_started)
    end_epoch(run, progress, epoch, lr, meter)


def end_epoch(run: StageRun, progress: Progress, epoch: int, lr: float, meter: EpochMeter) -> None:
    seconds, mean_loss = time.perf_counter() - meter.started, float(meter.loss_total) / max(meter.images, 1)
    result = run.result
    result.epochs_run += 1
    result.images += meter.images
    result.seconds += seconds
    result.final_loss = mean_loss
    images_per_s = round(meter.images / max(seconds, 1e-9), 2)
    run.log.write(
        "epoch", stage=run.stage, stage_index=run.stage_index, epoch=epoch, lr=lr, loss=mean_loss,
        images=meter.images, seconds=round(seconds, 4), images_per_s=images_per_s,
    )  # fmt: skip
    run.log.plot(run.global_step, {f"{run.stage}/epoch_loss": mean_loss, f"{run.stage}/lr": lr})
    score = validate(run, epoch)
    progress.finish(loss=mean_loss, lr=lr, img_s=images_per_s, val_acc=score)
    run.log.flush()


def validate(run: StageRun, epoch: int) -> float | None:
    """Score the validation set when due (main process, last stage); keep the best epoch."""
    validator, result = run.options.validator, run.result
    result.last_score = None
    due = validator is not None and validator.due(epoch, run.hp.epochs)
    if validator is None or not (due and run.ctx.is_main and run.last_stage):
        return None
    score, images = validator.score(run.learner)
    result.last_score = score
    if math.isfinite(score) and (result.best is None or score > result.best.score):
        tensors = {k: v.detach().cpu().clone() for k, v in run.learner.state_dict().items()}
        result.best = Best(score, run.stage_index, epoch + 1, tensors)
    best = result.best
    run.log.write(
        "validation", stage=run.stage, stage_index=run.stage_index, epoch=epoch, accuracy=score,
        images=images, best_epoch=best.completed - 1 if best else None,
        best_accuracy=best.score if best else None,
    )  # fmt: skip
    run.log.plot(run.global_step, {f"{run.stage}/val_accuracy": score})
    return score


def train_step(
    run: StageRun, optimizer: torch.optim.Optimizer, params: list[nn.Parameter], local: LocalBatch
) -> tuple[torch.Tensor, int]:
    """One optimiser step on one global batch; returns (mean loss over it, its image count)."""
    optimizer.zero_grad(set_to_none=True)
    loss = torch.full((), float("nan"), device=run.ctx.device)
    count = local.count
    if local.count:
        with autocast(run.ctx.device):
            loss = run.learner.loss(local.batch).float()
        # Distributed: backprop the local SUM; reduce_step divides by the global count.
        (loss * local.count if run.ctx.distributed else loss).backward()
        loss = loss.detach()
    if run.ctx.distributed:
        local_sum = float(loss) * local.count if local.count else 0.0
        mean, count = reduce_step(params, local_sum, local.count, run.ctx)
        loss = torch.tensor(mean, device=run.ctx.device)
    if count == 0:  # every image of this global batch was unreadable: no step
        return loss, 0
    if run.hp.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, run.hp.max_grad_norm)
    optimizer.step()
    run.result.steps += 1
    return loss, count


def log_step(run: StageRun, progress: Progress, info: StepInfo, lr: float, meter: EpochMeter) -> None:
    images_per_s = meter.images_per_s()
    progress.show(loss=info.loss, lr=lr, images_per_s=images_per_s)
    if (info.step + 1) % run.options.log_every == 0:
        step_seconds = meter.step_seconds(info.step)
        run.log.write(
            "step", stage=run.stage, stage_index=run.stage_index, epoch=info.epoch, step=info.step,
            loss=info.loss, lr=lr, images_per_s=round(images_per_s, 2), step_seconds=round(step_seconds, 5),
        )  # fmt: skip
        scalars = {"loss": info.loss, "lr": lr, "step_seconds": step_seconds, "images_per_s": images_per_s}
        run.log.plot(run.global_step, {f"{run.stage}/{name}": value for name, value in scalars.items()})
    if run.options.step_hook is not None:
        run.options.step_hook(info)


def report_skipped(run: StageRun, skipped: list[Skipped]) -> None:
    """Each unreadable image is reported once per process, by path, and the run goes on."""
    for item in skipped:
        if item.path in run.reported:
            continue
        run.reported.add(item.path)
        log.warning("skipped unreadable image %s (%s)", item.path, item.reason)
        run.log.write("skipped_image", path=item.path, reason=item.reason)
