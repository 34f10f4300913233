"""THE training loop, for every method: it only talks to the prompt-learner interface.

Per stage (the learner's `training_stages`; see models/prompts/base.py): an optimiser over the
learnable tensors, then epochs of steps. A step is `learner.loss(batch)` under bf16 autocast on
CUDA (fp32 master tensors), backward, the gradient all-reduce when several processes run,
optional clipping, and the optimiser step. The lr is set per epoch (Dassl's schedule). After each
epoch the resumable state is written atomically; a killed run resumed from it ends with the same
tensors as an uninterrupted run.
"""

from __future__ import annotations

import logging
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
from training.metrics import METRICS_FILE, MetricsLog
from training.optim import build_optimizer, learning_rate, set_learning_rate
from training.progress import Progress
from training.state import STATE_FILE, load_state, save_state

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
    run_dir: Path
    seed: int = 1
    fingerprint: str = ""  # of the run's settings; a state file from other settings is refused
    num_workers: int = 4
    progress: bool = True
    log_every: int = 20
    resume: bool = True
    cache_features: bool = True
    step_hook: Callable[[StepInfo], None] | None = None  # the benchmark's timer; tests' "kill"


@dataclass
class TrainResult:
    epochs_run: int = 0
    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    final_loss: float = float("nan")
    step_seconds: list[float] = field(default_factory=list)
    used_cached_features: bool = False


@dataclass
class StageRun:
    learner: PromptLearner
    hp: Hyperparameters
    ctx: DistContext
    options: LoopOptions
    metrics: MetricsLog
    stage_index: int
    stage: str
    result: TrainResult
    reported: set[str] = field(default_factory=set)


def train(
    learner: PromptLearner,
    data: LabeledImages,
    hparams: dict[str, Hyperparameters],
    ctx: DistContext,
    options: LoopOptions,
) -> TrainResult:
    """Train (or resume) every stage of `learner` on `data`; returns what ran in this call."""
    options.run_dir.mkdir(parents=True, exist_ok=True)
    metrics = MetricsLog(options.run_dir / METRICS_FILE, enabled=ctx.is_main)
    state = load_state(options.run_dir / STATE_FILE, options.fingerprint) if options.resume else None
    start = (state["stage_index"], state["next_epoch"]) if state else (0, 0)
    if state is not None:
        learner.load_state_dict(state["learner"])
        metrics.truncate_to(*start)
        metrics.write("resume", stage_index=start[0], next_epoch=start[1])
    else:
        metrics.reset()
        metrics.write("start", images=len(data), classes=len(data.keys), world_size=ctx.world_size)
    result = TrainResult()
    for stage_index, stage in enumerate(learner.training_stages):
        if stage_index < start[0]:
            continue
        learner.set_stage(stage)
        run = StageRun(learner, hparams[stage], ctx, options, metrics, stage_index, stage, result)
        resumed = state if state is not None and stage_index == start[0] else None
        run_stage(run, data, resumed)
    return result


def run_stage(run: StageRun, data: LabeledImages, state: dict | None) -> None:
    params = run.learner.trainable_parameters()
    optimizer = build_optimizer(params, run.hp)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    first_epoch = state["next_epoch"] if state is not None else 0
    if first_epoch >= run.hp.epochs:
        return
    feed = make_feed(run, data)
    for epoch in range(first_epoch, run.hp.epochs):
        run_epoch(run, feed, optimizer, params, epoch)
        if run.ctx.is_main:
            save_state(
                run.options.run_dir / STATE_FILE,
                {
                    "fingerprint": run.options.fingerprint,
                    "stage_index": run.stage_index,
                    "next_epoch": epoch + 1,
                    "learner": {k: v.detach().cpu() for k, v in run.learner.state_dict().items()},
                    "optimizer": optimizer.state_dict(),
                },
            )
        barrier(run.ctx)  # no rank starts the next epoch before the state is on disk


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
    lr = learning_rate(run.hp, epoch)
    set_learning_rate(optimizer, lr)
    run.learner.train()
    show = run.options.progress and run.ctx.is_main
    progress = Progress(len(feed), f"{run.stage} epoch {epoch + 1}/{run.hp.epochs}", show)
    # The loss stays on the device between log steps: reading it every step would make the host
    # wait for the GPU and stop it from queueing the next step's kernels.
    loss_total, images, started = torch.zeros((), device=run.ctx.device), 0, time.perf_counter()
    for step, local in enumerate(feed.epoch(epoch)):
        step_started = time.perf_counter()
        report_skipped(run, local.skipped)
        loss, count = train_step(run, optimizer, params, local)
        if count:
            loss_total, images = loss_total + loss * count, images + count
        if (step + 1) % run.options.log_every == 0 or run.options.step_hook is not None:
            log_step(
                run, progress, StepInfo(run.stage_index, epoch, step, float(loss), count), lr, started, images
            )
        progress.advance()
        run.result.step_seconds.append(time.perf_counter() - step_started)
    progress.close()
    end_epoch(run, epoch, lr, float(loss_total) / max(images, 1), images, time.perf_counter() - started)


def end_epoch(run: StageRun, epoch: int, lr: float, mean_loss: float, images: int, seconds: float) -> None:
    run.result.epochs_run += 1
    run.result.images += images
    run.result.seconds += seconds
    run.result.final_loss = mean_loss
    run.metrics.write(
        "epoch",
        stage=run.stage,
        stage_index=run.stage_index,
        epoch=epoch,
        lr=lr,
        loss=mean_loss,
        images=images,
        seconds=round(seconds, 4),
        images_per_s=round(images / max(seconds, 1e-9), 2),
    )


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


def log_step(
    run: StageRun, progress: Progress, info: StepInfo, lr: float, started: float, images: int
) -> None:
    images_per_s = images / max(time.perf_counter() - started, 1e-9)
    progress.show(loss=info.loss, lr=lr, images_per_s=images_per_s)
    if (info.step + 1) % run.options.log_every == 0:
        run.metrics.write(
            "step",
            stage=run.stage,
            stage_index=run.stage_index,
            epoch=info.epoch,
            step=info.step,
            loss=info.loss,
            lr=lr,
            images_per_s=round(images_per_s, 2),
        )
    if run.options.step_hook is not None:
        run.options.step_hook(info)


def report_skipped(run: StageRun, skipped: list[Skipped]) -> None:
    """Each unreadable image is reported once per process, by path, and the run goes on."""
    for item in skipped:
        if item.path in run.reported:
            continue
        run.reported.add(item.path)
        log.warning("skipped unreadable image %s (%s)", item.path, item.reason)
        run.metrics.write("skipped_image", path=item.path, reason=item.reason)
