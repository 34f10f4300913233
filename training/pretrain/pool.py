"""Rendered samples of the world held in memory: the training pool that episodes draw from, and
the held-out evaluation sets. Images go through the backbone's own evaluation transform (the
serving path, models/preprocess.py) once, and are kept as uint8 at model resolution (quantising
the transform's output back to 8 bits changes pixels by under half a level); captions are
tokenized once."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from models.backbone import Backbone, Preprocessing
from models.preprocess import Transform, eval_transform, normalise_pixels
from models.text import tokenize
from training.world import World

POOL_VERSION = 1  # bump when rendering or captions change, so old caches are not reused


@dataclass
class Pool:
    pixels: torch.Tensor  # [N, 3, H, W] uint8
    tokens: torch.Tensor  # [N, L] int64, L = the longest caption's EOT + 1
    eot: torch.Tensor  # [N] int64
    labels: torch.Tensor  # [N] int64 class ids
    mean: torch.Tensor  # [3, 1, 1]
    std: torch.Tensor  # [3, 1, 1]

    def __len__(self) -> int:
        return len(self.labels)

    def images(self, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
        """[B, 3, H, W] normalised pixels of the given rows, on `device`."""
        pixels = self.pixels[rows].to(device, non_blocking=True)
        return normalise_pixels(pixels, self.mean.to(device), self.std.to(device))

    def texts(self, rows: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tokens[rows].to(device), self.eot[rows].to(device)


class _Rendered(Dataset[tuple[torch.Tensor, int, str]]):
    def __init__(
        self, world: World, split: str, span: range, style: str | None, transform: Transform
    ) -> None:
        self.world, self.split, self.span, self.style, self.transform = world, split, span, style, transform

    def __len__(self) -> int:
        return len(self.span)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        sample = self.world.sample(self.split, self.span[index], self.style)
        pixels = self.transform(self.world.image(sample))  # [3, H, W] normalised float
        return pixels, sample.label, sample.caption


def render_pool(
    world: World,
    backbone: Backbone,
    split: str,
    count: int,
    style: str | None = None,
    start: int = 0,
    num_workers: int = 0,
) -> Pool:
    """Samples start..start+count-1 of `split` (style drawn per sample unless fixed)."""
    pre = backbone.preprocessing
    dataset = _Rendered(world, split, range(start, start + count), style, eval_transform(pre))
    mean, std = _stats(pre)
    pixels = torch.zeros(count, 3, pre.image_size, pre.image_size, dtype=torch.uint8)
    labels = torch.zeros(count, dtype=torch.long)
    captions: list[str] = []
    loader = DataLoader(dataset, batch_size=256, num_workers=num_workers, collate_fn=_collate)
    offset = 0
    for batch, batch_labels, batch_captions in loader:
        n = len(batch_labels)
        pixels[offset : offset + n] = ((batch * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
        labels[offset : offset + n] = batch_labels
        captions.extend(batch_captions)
        offset += n
    tokenized = tokenize(backbone, captions)
    length = int(tokenized.eot_index.max()) + 1 if count else 1
    return Pool(pixels, tokenized.tokens[:, :length].clone(), tokenized.eot_index, labels, mean, std)


def cached_pool(
    cache: Path | None,
    world: World,
    backbone: Backbone,
    split: str,
    count: int,
    style: str | None = None,
    start: int = 0,
    num_workers: int = 0,
) -> Pool:
    """render_pool, kept in `cache` (a folder) under a digest of everything that decides it, so
    runs that share a pool (a comparison, a resume) render it once. Loaded with weights_only."""
    if cache is None:
        return render_pool(world, backbone, split, count, style, start, num_workers)
    key = {
        "world": vars(world.config),
        "preprocessing": backbone.preprocessing.to_dict(),
        "context": backbone.context_length,
        "what": [split, count, style, start],
        "version": POOL_VERSION,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"pool-{split}-{count}-{style or 'mixed'}-{digest}.pt"
    if path.is_file():
        return Pool(**torch.load(path, weights_only=True))
    pool = render_pool(world, backbone, split, count, style, start, num_workers)
    cache.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(vars(pool), temp)
    os.replace(temp, path)
    return pool


def _collate(items: list[tuple[torch.Tensor, int, str]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    return (
        torch.stack([item[0] for item in items]),
        torch.tensor([item[1] for item in items], dtype=torch.long),
        [item[2] for item in items],
    )


def _stats(pre: Preprocessing) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(pre.mean).view(3, 1, 1), torch.tensor(pre.std).view(3, 1, 1)
