"""Data parallelism across processes (torchrun), without DistributedDataParallel.

DDP hooks `forward()`, but the prompt-learner interface trains through `loss(batch)`, and the
learned tensors are small (a CoOp context is 8k floats; MaPLe's 3.5M), so we do what DDP does by
hand: identical initial tensors (broadcast from rank 0), each rank's share of every global batch,
and one flattened all-reduce of the gradients per step. Each rank backpropagates the SUM of its
per-sample losses, and the reduced gradient is divided by the global sample count, so the update
equals one process's step on the whole global batch, even when ranks drop unreadable images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_from_env(device: str | None = None) -> DistContext:
    """Read torchrun's RANK/WORLD_SIZE/LOCAL_RANK; one process without them. CUDA uses NCCL and
    one device per local rank; CPU uses gloo."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    wanted = device or ("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(f"cuda:{local_rank}") if wanted == "cuda" else torch.device(wanted)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            "nccl" if resolved.type == "cuda" else "gloo", rank=rank, world_size=world_size
        )
    return DistContext(rank=rank, world_size=world_size, device=resolved)


def broadcast_parameters(module: nn.Module, ctx: DistContext) -> None:
    """Every rank starts from rank 0's tensors (and buffers, e.g. BatchNorm statistics)."""
    if not ctx.distributed:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def reduce_step(
    params: list[nn.Parameter], loss_sum: float, count: int, ctx: DistContext
) -> tuple[float, int]:
    """Sum gradients, the loss and the sample count over ranks in one collective; divide the
    gradients by the global count. Returns (global mean loss, global count)."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat(
        [g.reshape(-1).float() for g in grads] + [torch.tensor([loss_sum, count], device=ctx.device)]
    )
    dist.all_reduce(flat)
    total_loss, total = float(flat[-2]), round(float(flat[-1]))
    offset = 0
    for p, g in zip(params, grads, strict=True):
        part = flat[offset : offset + g.numel()].view_as(g) / max(total, 1)
        p.grad = part.to(p.dtype)
        offset += g.numel()
    return total_loss / max(total, 1), total


class _GatherRows(torch.autograd.Function):
    """all_gather along dim 0 of row blocks whose sizes may differ by rank (each is padded to the
    largest for the collective, then trimmed). The backward sums the incoming gradients over
    ranks and hands each rank the rows it contributed; works on gloo and NCCL alike."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, sizes: tuple[int, ...], rank: int) -> torch.Tensor:
        padded = local.new_zeros((max(sizes), *local.shape[1:]))
        padded[: len(local)] = local
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        ctx.start, ctx.rows = sum(sizes[:rank]), sizes[rank]
        return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.start : ctx.start + ctx.rows], None, None


def gather_rows(local: torch.Tensor, sizes: tuple[int, ...], ctx: DistContext) -> torch.Tensor:
    """[sizes[rank], ...] on each rank -> [sum(sizes), ...], rank 0's rows first; differentiable."""
    if not ctx.distributed:
        return local
    if len(sizes) != ctx.world_size or len(local) != sizes[ctx.rank]:
        raise ValueError(f"rank {ctx.rank} holds {len(local)} rows; the shares say {sizes}")
    gathered: torch.Tensor = _GatherRows.apply(local, tuple(sizes), ctx.rank)
    return gathered


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
