"""The batch plan of an epoch, shared by every rank and by resumed runs.

Randomness is a pure function of (seed, epoch[, index]): the epoch's permutation, and each
sample's augmentation. Nothing depends on how many processes or loader workers run, or on how
many epochs ran before in this process, which is what makes a resumed run end exactly where an
uninterrupted one does and two processes match one process with the same global batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


def mixed_seed(*parts: object) -> int:
    """A 63-bit seed from any tuple of values, stable across processes and Python runs."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Global batches of one epoch. Like Dassl, the incomplete last batch is dropped when the
    dataset holds at least one full batch; a smaller dataset is one batch."""
    generator = torch.Generator().manual_seed(mixed_seed("permutation", seed, epoch))
    order = torch.randperm(n, generator=generator).tolist()
    if n < batch_size:
        return [order] if order else []
    return [order[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def rank_shares(n: int, world_size: int) -> tuple[int, ...]:
    """How many of n rows each rank takes in `rank_slice`, rank 0 first."""
    size, extra = divmod(n, world_size)
    return tuple(size + (1 if rank < extra else 0) for rank in range(world_size))


def rank_slice(batch: list[int], rank: int, world_size: int) -> list[int]:
    """This rank's contiguous share of a global batch (sizes differ by at most one)."""
    size, extra = divmod(len(batch), world_size)
    start = rank * size + min(rank, extra)
    return batch[start : start + size + (1 if rank < extra else 0)]


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields this rank's (index, epoch) lists; the epoch travels with each index so loader
    workers (persistent or not) seed each sample's augmentation without shared state."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in epoch_batches(self.n, self.batch_size, self.seed, self.epoch):
            yield [(index, self.epoch) for index in rank_slice(batch, self.rank, self.world_size)]

    def __len__(self) -> int:
        return len(epoch_batches(self.n, self.batch_size, self.seed, self.epoch))
