"""torch Datasets over labelled image records, and the collate function that drops bad images.

A sample that fails to decode comes back as `Skipped(path, reason)` instead of raising, so one bad
file costs one image, not the run; `collate` moves skipped entries aside for the caller to report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

from training.data.batches import mixed_seed
from training.data.images import UnreadableImage, load_rgb
from training.data.sources import ImageRecord
from training.data.transforms import Transform


@dataclass
class Sample:
    index: int
    label: int
    image: torch.Tensor  # [3, H, W]
    views: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Skipped:
    path: str
    reason: str


@dataclass
class Collated:
    """A (possibly empty) batch of decoded samples, plus the images that could not be read."""

    indices: torch.Tensor  # [B] int64, positions in the dataset
    labels: torch.Tensor  # [B] int64
    images: torch.Tensor | None  # [B, 3, H, W], None when B == 0
    views: dict[str, torch.Tensor]
    skipped: list[Skipped]

    def __len__(self) -> int:
        return len(self.labels)


class TrainImages(Dataset[Sample | Skipped]):
    """Keys are (index, epoch): each sample's augmentation is seeded from (seed, epoch, index)."""

    def __init__(
        self,
        records: Sequence[ImageRecord],
        transform: Transform,
        views: dict[str, Transform] | None = None,
        seed: int = 0,
    ) -> None:
        self.records, self.transform, self.views, self.seed = list(records), transform, views or {}, seed

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: tuple[int, int]) -> Sample | Skipped:
        index, epoch = key
        record = self.records[index]
        try:
            image = load_rgb(record.path)
        except UnreadableImage as error:
            return Skipped(record.path, error.reason)
        # fork_rng keeps the global generator untouched; torchvision transforms draw from it.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mixed_seed("augment", self.seed, epoch, index))
            pixels = self.transform(image)
            views = {name: transform(image) for name, transform in self.views.items()}
        return Sample(index, record.label, pixels, views)


class EvalImages(Dataset[Sample | Skipped]):
    def __init__(self, records: Sequence[ImageRecord], transform: Transform) -> None:
        self.records, self.transform = list(records), transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample | Skipped:
        record = self.records[index]
        try:
            return Sample(index, record.label, self.transform(load_rgb(record.path)))
        except UnreadableImage as error:
            return Skipped(record.path, error.reason)


def collate(items: Sequence[Sample | Skipped]) -> Collated:
    samples = [item for item in items if isinstance(item, Sample)]
    skipped = [item for item in items if isinstance(item, Skipped)]
    images = torch.stack([s.image for s in samples]) if samples else None
    names = samples[0].views.keys() if samples else ()
    return Collated(
        indices=torch.tensor([s.index for s in samples], dtype=torch.long),
        labels=torch.tensor([s.label for s in samples], dtype=torch.long),
        images=images,
        views={name: torch.stack([s.views[name] for s in samples]) for name in names},
        skipped=skipped,
    )
