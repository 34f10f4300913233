"""THE pretraining loop: episodes of steps over the world's training pool, with the training
package's conventions (training/loop.py): one optimiser builder and one learning-rate schedule
(training/optim.py), one state record written atomically after every episode (training/state.py;
a finished run given more episodes continues, re-planned), one run log (metrics.jsonl, and
TensorBoard when asked: training/runlog.py), a progress line per episode, bf16 autocast on CUDA
with fp32 master weights, and one gradient all-reduce per step under torchrun (distributed.py).

An episode (ProtoCLIP): draw `episode_size` pool rows with replacement; unless the episode is the
InfoNCE warmup or the LiT phase, encode them all without gradients, cluster each modality's
projections and build the PBT prototypes (rank 0 clusters and broadcasts); then train on the
episode in global batches. All randomness derives from (seed, episode), so a resumed run draws
the same episodes as an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from training.data.batches import rank_shares, rank_slice
from training.distributed import DistContext, barrier, reduce_step
from training.feeds import autocast
from training.optim import set_learning_rate
from training.options import default_of
from training.pretrain.config import PretrainConfig, RunOptions
from training.pretrain.episodes import Episode, Teacher, prepare_episode
from training.pretrain.model import PretrainModel
from training.pretrain.pool import Pool
from training.pretrain.steps import StepBatch, build_optimizer, check_batch_split, objective, schedule
from training.progress import Progress
from training.runlog import RunLog
from training.state import STATE_FILE, RunState, load_state, resume_point, save_state

log = logging.getLogger(__name__)

Evaluator = Callable[[PretrainModel], dict[str, float]]
UNIT = "episode"
BOARD = "pretrain"  # TensorBoard tag prefix


@dataclass
class PretrainOptions:
    """How the loop runs; the defaults are `clipserve pretrain`'s (training/pretrain/config.py)."""

    run_dir: Path
    fingerprint: str = ""
    progress: bool = default_of(RunOptions, "progress")
    resume: bool = default_of(RunOptions, "resume")
    log_every: int = default_of(RunOptions, "log_every")
    tensorboard: str | Path | None = default_of(RunOptions, "tensorboard")
    teacher: Teacher | None = None  # the external-teacher hook (ProtoCLIP's L_external)
    evaluator: Evaluator | None = None  # called after every episode on the main process
    step_hook: Callable[[int, float], None] | None = None  # (global step, loss): tests, timing


@dataclass
class PretrainResult:
    episodes_run: int = 0
    steps: int = 0
    seconds: float = 0.0
    final_loss: float = float("nan")  # mean loss of the run's last episode, even when none ran now
    losses: list[float] = field(default_factory=list)  # per step, this call only
    already_complete: bool = False
    notes: list[str] = field(default_factory=list)  # re-planning, said at the start


@dataclass
class EpisodeRun:
    """What one call of `pretrain` works with."""

    model: PretrainModel
    optimizer: torch.optim.Optimizer
    pool: Pool
    config: PretrainConfig
    ctx: DistContext
    options: PretrainOptions
    log: RunLog
    result: PretrainResult


def pretrain(
    model: PretrainModel, pool: Pool, config: PretrainConfig, ctx: DistContext, options: PretrainOptions
) -> PretrainResult:
    """Train, resume or extend `model` to config.episodes episodes; returns what ran in this call."""
    if ctx.distributed and options.teacher is not None:
        raise ValueError("an external teacher is supported in one process only (no torchrun yet)")
    check_batch_split(config, ctx.world_size)
    options.run_dir.mkdir(parents=True, exist_ok=True)
    optimizer = build_optimizer(model, config, model.visual_parameters())
    run = EpisodeRun(model, optimizer, pool, config, ctx, options, RunLog(options.run_dir, UNIT, ctx.is_main,
                     options.tensorboard), PretrainResult())  # fmt: skip
    start = _restore(run)
    try:
        for index in range(start, config.episodes):
            episode = prepare_episode(model, pool, config, ctx, index, options.teacher)
            run_episode(run, episode)
            if ctx.is_main:
                save_state(options.run_dir / STATE_FILE, snapshot(run, index + 1))
            barrier(ctx)  # no rank starts the next episode before the state is on disk
    finally:
        run.log.close()
    return run.result


def _restore(run: EpisodeRun) -> int:
    """Load the state (if resuming), say what was re-planned; returns the first episode to run."""
    options, result = run.options, run.result
    state = load_state(options.run_dir / STATE_FILE, options.fingerprint) if options.resume else None
    point = resume_point(state, [run.config.episodes], ["pretrain"])
    run.log.begin(state, pool=len(run.pool), world_size=run.ctx.world_size)
    if state is not None:
        run.model.load_state_dict(state.tensors)
        run.optimizer.load_state_dict(state.optimizer)
        result.final_loss = state.last_loss
    run.log.standing(point, [run.config.episodes], result.final_loss)
    result.notes, result.already_complete = list(point.notes), point.is_complete([run.config.episodes])
    return point.completed


def snapshot(run: EpisodeRun, completed: int) -> RunState:
    return RunState(
        fingerprint=run.options.fingerprint,
        unit=UNIT,
        stage_index=0,
        completed=completed,
        planned=[run.config.episodes],
        global_step=completed * run.config.steps_per_episode,
        last_loss=run.result.final_loss,
        tensors={k: v.detach().cpu() for k, v in run.model.state_dict().items()},
        optimizer=run.optimizer.state_dict(),
    )


def run_episode(run: EpisodeRun, episode: Episode) -> None:
    config, options = run.config, run.options
    run.model.train()
    steps = config.steps_per_episode
    progress = Progress(
        steps, f"episode {episode.index + 1}/{config.episodes}", options.progress and run.ctx.is_main
    )
    totals: dict[str, float] = {}
    started = logged_at = time.perf_counter()
    plan = schedule(config)
    for step in range(steps):
        global_step = episode.index * steps + step
        lr = plan.at(global_step)
        set_learning_rate(run.optimizer, lr, "visual" if episode.freeze_visual else None)
        loss, parts = train_step(run, episode, step)
        for name, value in {"loss": loss, **parts}.items():
            totals[name] = totals.get(name, 0.0) + value
        run.result.steps += 1
        run.result.losses.append(loss)
        if options.step_hook is not None:
            options.step_hook(global_step, loss)
        if (step + 1) % options.log_every == 0:
            now = time.perf_counter()
            step_seconds, logged_at = (now - logged_at) / options.log_every, now
            rate = (step + 1) * config.batch_size / (now - started)
            progress.show(loss=loss, lr=lr, images_per_s=rate)
            log_step(run, episode, step, global_step + 1, {"loss": loss, "lr": lr, **parts}, step_seconds)
        progress.advance()
    end_episode(run, episode, totals, time.perf_counter() - started, progress)


def log_step(
    run: EpisodeRun,
    episode: Episode,
    step: int,
    global_step: int,
    values: dict[str, float],
    step_seconds: float,
) -> None:
    run.log.write(
        "step", stage_index=0, episode=episode.index, step=step, step_seconds=round(step_seconds, 5), **values
    )
    run.log.plot(
        global_step,
        {f"{BOARD}/{name}": value for name, value in {**values, "step_seconds": step_seconds}.items()},
    )


def train_step(run: EpisodeRun, episode: Episode, step: int) -> tuple[float, dict[str, float]]:
    """One optimiser step on one global batch; returns the global-batch loss and its parts."""
    config, ctx, model = run.config, run.ctx, run.model
    positions = torch.arange(step * config.batch_size, (step + 1) * config.batch_size)
    shares = rank_shares(config.batch_size, ctx.world_size)
    mine = torch.tensor(rank_slice(positions.tolist(), ctx.rank, ctx.world_size), dtype=torch.long)
    rows = episode.rows[mine]
    batch = StepBatch(
        run.pool.images(rows, ctx.device),
        *run.pool.texts(rows, ctx.device),
        positions=mine.to(ctx.device),
        global_size=config.batch_size,
        offset=sum(shares[: ctx.rank]),
        shares=shares,
    )
    run.optimizer.zero_grad(set_to_none=True)
    with autocast(ctx.device):
        share, parts = objective(model, batch, episode.protos, config, ctx)
    (share * ctx.world_size).backward()  # reduce_step divides the summed gradients by world_size
    loss = float(share.detach())
    values = {name: float(value.detach()) for name, value in parts.items()}
    if ctx.distributed:
        params = [p for p in model.parameters() if p.requires_grad]
        loss = reduce_step(params, loss * ctx.world_size, 1, ctx)[0]
        values = _global_parts(values, len(rows) / config.batch_size, ctx)
    if config.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    run.optimizer.step()
    model.clamp_scales()
    return loss, values


def _global_parts(parts: dict[str, float], share: float, ctx: DistContext) -> dict[str, float]:
    """The clip part is already this rank's share of the global value; prototype parts are means
    over this rank's rows, weighted by its share of the batch (shares may differ by a row)."""
    names = sorted(parts)
    local = [parts[name] if name == "clip" else parts[name] * share for name in names]
    summed = torch.tensor(local, device=ctx.device, dtype=torch.float64)
    dist.all_reduce(summed)
    return {name: float(value) for name, value in zip(names, summed, strict=True)}


def end_episode(
    run: EpisodeRun, episode: Episode, totals: dict[str, float], seconds: float, progress: Progress
) -> None:
    config, options, result = run.config, run.options, run.result
    steps = config.steps_per_episode
    result.episodes_run += 1
    result.seconds += seconds
    result.final_loss = totals["loss"] / steps
    record: dict[str, Any] = {name: value / steps for name, value in totals.items()}
    record["logit_scale"] = float(run.model.clip.logit_scale.detach().exp())
    record["prototypes"] = episode.protos is not None
    record["lit"] = episode.freeze_visual
    if options.evaluator is not None and run.log.enabled:
        record.update(options.evaluator(run.model))
        run.model.train()
    run.log.write(
        UNIT, stage_index=0, episode=episode.index, seconds=round(seconds, 2), steps=steps, **record
    )
    scalars = {k: float(v) for k, v in record.items() if k != "loss" and not isinstance(v, bool)}
    run.log.plot(
        (episode.index + 1) * steps,
        {f"{BOARD}/{k}": v for k, v in {"episode_loss": result.final_loss, **scalars}.items()},
    )
    progress.finish(loss=result.final_loss, **{k: v for k, v in record.items() if k.startswith("zero_shot")})
    run.log.flush()
    log.info("episode %d/%d: %s", episode.index + 1, config.episodes, _brief(record))


def _brief(record: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
