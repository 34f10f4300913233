"""What the loop iterates over in an epoch: decoded, augmented images from a DataLoader, or, when
the image tower is frozen and nothing is augmented, image features computed once and cached (an
epoch then costs only the text side). Both follow the same batch plan, so they see the same
samples in the same order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from models.prompts import Batch, PromptLearner
from training.data.batches import EpochBatchSampler, epoch_batches, rank_slice
from training.data.dataset import Collated, EvalImages, Skipped, TrainImages, collate
from training.data.sources import LabeledImages
from training.data.transforms import eval_transform, train_transform, view_transforms
from training.distributed import DistContext
from training.hparams import Hyperparameters

log = logging.getLogger(__name__)


@dataclass
class LocalBatch:
    """This rank's share of one global batch, ready for `learner.loss`."""

    batch: Batch
    count: int
    skipped: list[Skipped] = field(default_factory=list)


class ImageFeed:
    def __init__(
        self,
        learner: PromptLearner,
        data: LabeledImages,
        hp: Hyperparameters,
        ctx: DistContext,
        seed: int,
        num_workers: int,
    ) -> None:
        pre = learner.backbone.preprocessing
        dataset = TrainImages(
            data.records,
            train_transform(pre, hp.augment, hp.rrc_scale),
            view_transforms(learner.extra_views, pre),
            seed=seed,
        )
        self.sampler = EpochBatchSampler(len(dataset), hp.batch_size, seed, ctx.rank, ctx.world_size)
        self.loader = DataLoader(
            dataset,
            batch_sampler=self.sampler,
            collate_fn=collate,
            num_workers=num_workers,
            pin_memory=ctx.device.type == "cuda",
            persistent_workers=num_workers > 0,
        )
        self.device = ctx.device

    def __len__(self) -> int:
        return len(self.sampler)

    def epoch(self, epoch: int) -> Iterator[LocalBatch]:
        self.sampler.set_epoch(epoch)
        for collated in self.loader:
            yield LocalBatch(_to_batch(collated, self.device), len(collated), collated.skipped)


class FeatureFeed:
    def __init__(
        self, learner: PromptLearner, data: LabeledImages, hp: Hyperparameters, ctx: DistContext, seed: int
    ) -> None:
        self.features, self.valid, self.skipped = cached_features(learner, data, ctx.device)
        self.labels = torch.tensor([r.label for r in data.records], dtype=torch.long, device=ctx.device)
        self.hp, self.ctx, self.seed, self.n = hp, ctx, seed, len(data)

    def __len__(self) -> int:
        return len(epoch_batches(self.n, self.hp.batch_size, self.seed, 0))

    def epoch(self, epoch: int) -> Iterator[LocalBatch]:
        for batch in epoch_batches(self.n, self.hp.batch_size, self.seed, epoch):
            rows = torch.tensor(rank_slice(batch, self.ctx.rank, self.ctx.world_size), dtype=torch.long)
            rows = rows[self.valid[rows]].to(self.ctx.device)
            yield LocalBatch(Batch(labels=self.labels[rows], features=self.features[rows]), len(rows))


@torch.no_grad()
def cached_features(
    learner: PromptLearner, data: LabeledImages, device: torch.device, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor, list[Skipped]]:
    """[N, D] stock image features of every training image (eval preprocessing), a [N] mask of
    the images that decoded, and the ones that did not."""
    dataset = EvalImages(data.records, eval_transform(learner.backbone.preprocessing))
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
    features = torch.zeros(len(data), learner.backbone.embed_dim, device=device)
    valid = torch.zeros(len(data), dtype=torch.bool)
    skipped: list[Skipped] = []
    for collated in loader:
        skipped.extend(collated.skipped)
        if collated.images is not None:
            with autocast(device):
                features[collated.indices.to(device)] = learner.backbone.encode_images(
                    collated.images
                ).float()
            valid[collated.indices] = True
    return features, valid, skipped


def use_cached_features(learner: PromptLearner, hp: Hyperparameters, allowed: bool) -> bool:
    """Only when the stock tower's output is all the loss needs and no view is random."""
    return allowed and learner.accepts_cached_features and not learner.extra_views and hp.augment == "none"


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA (learned tensors stay fp32); a no-op on CPU."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _to_batch(collated: Collated, device: torch.device) -> Batch:
    def move(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(device, non_blocking=True)

    return Batch(
        labels=move(collated.labels),
        images=move(collated.images) if collated.images is not None else None,
        views={name: move(view) for name, view in collated.views.items()},
    )
