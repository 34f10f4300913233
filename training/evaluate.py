"""Accuracy of a learner on one labelled image set, in that set's own label space.

Cacheable methods get their class matrix once and score every image against it; image-conditioned
ones (CoCoOp, GOPro) go through `logits`, which handles their per-image text passes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from models.prompts import PromptLearner
from training.data.dataset import EvalImages, collate
from training.data.sources import LabeledImages
from training.data.transforms import eval_transform
from training.feeds import autocast

log = logging.getLogger(__name__)


@dataclass
class SetResult:
    """Predictions on one image set; accuracies in percent."""

    name: str
    classnames: list[str]
    labels: torch.Tensor  # [N] int64
    predictions: torch.Tensor  # [N] int64
    skipped: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        if len(self.labels) == 0:
            return float("nan")
        return 100.0 * int((self.predictions == self.labels).sum()) / len(self.labels)

    def confusion(self) -> torch.Tensor:
        """[C, C] counts; row = true class, column = predicted class."""
        n = len(self.classnames)
        flat = self.labels * n + self.predictions
        return torch.bincount(flat, minlength=n * n).view(n, n)

    def per_class_accuracy(self) -> list[float]:
        confusion = self.confusion()
        totals = confusion.sum(dim=1)
        correct = confusion.diag()
        return [
            100.0 * int(c) / int(t) if t > 0 else float("nan") for c, t in zip(correct, totals, strict=True)
        ]


@torch.no_grad()
def evaluate(
    learner: PromptLearner,
    data: LabeledImages,
    classnames: Sequence[str] | None = None,
    batch_size: int = 128,
    num_workers: int = 0,
) -> SetResult:
    """Top-1 predictions of `learner` on `data`, classifying among `classnames` (default: the
    set's own classes). Unreadable images are skipped and listed."""
    learner.eval()
    names = list(classnames if classnames is not None else data.classnames)
    device = learner.backbone.device
    loader = DataLoader(
        EvalImages(data.records, eval_transform(learner.backbone.preprocessing)),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate,
    )
    class_matrix = None if learner.image_conditioned else learner.class_embeddings(names)  # [C, D]
    labels: list[torch.Tensor] = []
    predictions: list[torch.Tensor] = []
    skipped: list[str] = []
    for batch in loader:
        skipped.extend(item.path for item in batch.skipped)
        if batch.images is None:
            continue
        images = batch.images.to(device)
        with autocast(device):
            if class_matrix is None:
                logits = learner.logits(images, names)
            else:
                logits = learner.scores(learner.image_embeddings(images), class_matrix)  # [B, C]
        labels.append(batch.labels)
        predictions.append(logits.argmax(dim=-1).cpu())
    for path in skipped:
        log.warning("skipped unreadable image %s", path)
    return SetResult(data.name, names, _cat(labels), _cat(predictions), skipped)


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
