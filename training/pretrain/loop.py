"""THE pretraining loop: episodes of steps over the world's training pool, with the training
package's conventions (training/loop.py): a tqdm bar, JSON-lines metrics, an atomic resumable
state after every episode (state.py), bf16 autocast on CUDA with fp32 master weights, and one
gradient all-reduce per step under torchrun (distributed.py).

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

from training.data.batches import rank_slice
from training.distributed import DistContext, barrier, reduce_step
from training.feeds import autocast
from training.metrics import METRICS_FILE, MetricsLog
from training.pretrain.config import PretrainConfig
from training.pretrain.episodes import Episode, Teacher, prepare_episode
from training.pretrain.model import PretrainModel
from training.pretrain.pool import Pool
from training.pretrain.steps import StepBatch, build_optimizer, learning_rate, objective, set_learning_rate
from training.progress import Progress
from training.state import STATE_FILE, load_state, save_state

log = logging.getLogger(__name__)

Evaluator = Callable[[PretrainModel], dict[str, float]]


@dataclass
class PretrainOptions:
    run_dir: Path
    fingerprint: str = ""
    progress: bool = True
    resume: bool = True
    log_every: int = 20
    teacher: Teacher | None = None  # the external-teacher hook (ProtoCLIP's L_external)
    evaluator: Evaluator | None = None  # called after every episode on the main process
    step_hook: Callable[[int, float], None] | None = None  # (global step, loss): tests, timing


@dataclass
class PretrainResult:
    episodes_run: int = 0
    steps: int = 0
    seconds: float = 0.0
    final_loss: float = float("nan")
    losses: list[float] = field(default_factory=list)  # per step, this call only


def pretrain(
    model: PretrainModel, pool: Pool, config: PretrainConfig, ctx: DistContext, options: PretrainOptions
) -> PretrainResult:
    """Train (or resume) `model` for config.episodes episodes; returns what ran in this call."""
    if ctx.distributed and options.teacher is not None:
        raise ValueError("an external teacher is supported in one process only (no torchrun yet)")
    options.run_dir.mkdir(parents=True, exist_ok=True)
    metrics = MetricsLog(options.run_dir / METRICS_FILE, enabled=ctx.is_main)
    optimizer = build_optimizer(model, config, model.visual_parameters())
    start = _restore(model, optimizer, metrics, options, pool, ctx)
    result = PretrainResult()
    for index in range(start, config.episodes):
        episode = prepare_episode(model, pool, config, ctx, index, options.teacher)
        run_episode(model, optimizer, pool, config, ctx, options, metrics, episode, result)
        if ctx.is_main:
            save_state(
                options.run_dir / STATE_FILE,
                {
                    "fingerprint": options.fingerprint,
                    "stage_index": 0,
                    "next_epoch": index + 1,
                    "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "optimizer": optimizer.state_dict(),
                },
            )
        barrier(ctx)  # no rank starts the next episode before the state is on disk
    return result


def _restore(
    model: PretrainModel,
    optimizer: torch.optim.Optimizer,
    metrics: MetricsLog,
    options: PretrainOptions,
    pool: Pool,
    ctx: DistContext,
) -> int:
    state = load_state(options.run_dir / STATE_FILE, options.fingerprint) if options.resume else None
    if state is None:
        metrics.truncate_to(0, 0)
        metrics.write("start", pool=len(pool), world_size=ctx.world_size)
        return 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    metrics.truncate_to(0, state["next_epoch"])
    metrics.write("resume", next_episode=state["next_epoch"])
    return int(state["next_epoch"])


def run_episode(
    model: PretrainModel,
    optimizer: torch.optim.Optimizer,
    pool: Pool,
    config: PretrainConfig,
    ctx: DistContext,
    options: PretrainOptions,
    metrics: MetricsLog,
    episode: Episode,
    result: PretrainResult,
) -> None:
    model.train()
    steps = config.steps_per_episode
    show = options.progress and ctx.is_main
    progress = Progress(steps, f"episode {episode.index + 1}/{config.episodes}", show)
    totals: dict[str, float] = {}
    started = time.perf_counter()
    for step in range(steps):
        global_step = episode.index * steps + step
        lr = learning_rate(config, global_step)
        set_learning_rate(optimizer, lr, episode.freeze_visual)
        loss, parts = train_step(model, optimizer, pool, config, ctx, episode, step)
        for name, value in {"loss": loss, **parts}.items():
            totals[name] = totals.get(name, 0.0) + value
        result.steps += 1
        result.losses.append(loss)
        if options.step_hook is not None:
            options.step_hook(global_step, loss)
        if (step + 1) % options.log_every == 0:
            rate = (step + 1) * config.batch_size / (time.perf_counter() - started)
            progress.show(loss=loss, lr=lr, images_per_s=rate)
            metrics.write("step", stage_index=0, epoch=episode.index, step=step, loss=loss, lr=lr, **parts)
        progress.advance()
    progress.close()
    end_episode(model, config, options, metrics, episode, result, totals, time.perf_counter() - started)


def train_step(
    model: PretrainModel,
    optimizer: torch.optim.Optimizer,
    pool: Pool,
    config: PretrainConfig,
    ctx: DistContext,
    episode: Episode,
    step: int,
) -> tuple[float, dict[str, float]]:
    """One optimiser step on one global batch; returns the global-batch loss and its parts."""
    positions = torch.arange(step * config.batch_size, (step + 1) * config.batch_size)
    mine = torch.tensor(rank_slice(positions.tolist(), ctx.rank, ctx.world_size), dtype=torch.long)
    rows = episode.rows[mine]
    batch = StepBatch(
        pool.images(rows, ctx.device),
        *pool.texts(rows, ctx.device),
        positions=mine.to(ctx.device),
        global_size=config.batch_size,
        offset=int(mine[0]) - step * config.batch_size,
    )
    optimizer.zero_grad(set_to_none=True)
    with autocast(ctx.device):
        share, parts = objective(model, batch, episode.protos, config, ctx)
    (share * ctx.world_size).backward()  # reduce_step divides the summed gradients by world_size
    loss = float(share.detach())
    values = {name: float(value.detach()) for name, value in parts.items()}
    if ctx.distributed:
        params = [p for p in model.parameters() if p.requires_grad]
        loss = reduce_step(params, loss * ctx.world_size, 1, ctx)[0]
        values = _global_parts(values, ctx)
    if config.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    optimizer.step()
    model.clamp_scales()
    return loss, values


def _global_parts(parts: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """The clip part is a per-rank share (sum them); prototype parts are per-rank means."""
    names = sorted(parts)
    summed = torch.tensor([parts[name] for name in names], device=ctx.device)
    dist.all_reduce(summed)
    return {n: float(v) / (1 if n == "clip" else ctx.world_size) for n, v in zip(names, summed, strict=True)}


def end_episode(
    model: PretrainModel,
    config: PretrainConfig,
    options: PretrainOptions,
    metrics: MetricsLog,
    episode: Episode,
    result: PretrainResult,
    totals: dict[str, float],
    seconds: float,
) -> None:
    steps = config.steps_per_episode
    result.episodes_run += 1
    result.seconds += seconds
    result.final_loss = totals["loss"] / steps
    record: dict[str, Any] = {name: value / steps for name, value in totals.items()}
    record["logit_scale"] = float(model.clip.logit_scale.detach().exp())
    record["prototypes"] = episode.protos is not None
    record["lit"] = episode.freeze_visual
    if options.evaluator is not None and metrics.enabled:
        record.update(options.evaluator(model))
        model.train()
    metrics.write(
        "epoch", stage_index=0, epoch=episode.index, seconds=round(seconds, 2), steps=steps, **record
    )
    log.info("episode %d/%d: %s", episode.index + 1, config.episodes, _brief(record))


def _brief(record: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
