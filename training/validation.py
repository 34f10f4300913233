"""Validation during training: the accuracy (%) of the learner that will be served on a held-out
set of the training classes, scored every N epochs and after the last one, on the main process.

Methods whose image side is stock CLIP and whose text side does not look at the image (CoOp, SHIP's
classifier) get the validation images encoded once: each validation then costs one text pass and
a matrix product. The others (MaPLe, CoCoOp, GOPro) go through `evaluate`.
"""

from __future__ import annotations

import torch

from models.prompts import PromptLearner
from training.data.sources import LabeledImages
from training.evaluate import evaluate
from training.feeds import autocast, cached_features


class Validator:
    def __init__(self, data: LabeledImages, every: int, num_workers: int = 0, batch_size: int = 128) -> None:
        if every < 1:
            raise ValueError(f"--val-every must be >= 1, got {every}")
        self.data, self.every, self.num_workers, self.batch_size = data, every, num_workers, batch_size
        self._features: tuple[torch.Tensor, torch.Tensor] | None = None  # [N, D] features, [N] labels

    def due(self, epoch: int, epochs: int) -> bool:
        """Every `every` epochs (counted from 1), and after the last epoch of the plan."""
        return (epoch + 1) % self.every == 0 or epoch + 1 == epochs

    @torch.no_grad()
    def score(self, learner: PromptLearner) -> tuple[float, int]:
        """(top-1 accuracy in %, images scored: the readable ones) of the learner that is served."""
        served = learner.serving_learner()
        was_training = learner.training
        try:
            served.eval()
            if served.custom_image_encoder or served.image_conditioned:
                result = evaluate(served, self.data, served.classnames, self.batch_size, self.num_workers)
                return result.accuracy, len(result.labels)
            features, labels = self.stock_features(served)
            with autocast(served.backbone.device):
                classes = served.class_embeddings(served.classnames)  # [C, D]
            predictions = served.scores(features, classes).argmax(dim=-1).cpu()  # [N]
            correct = int((predictions == labels).sum())
            return (100.0 * correct / len(labels) if len(labels) else float("nan")), len(labels)
        finally:
            learner.train(was_training)

    def stock_features(self, learner: PromptLearner) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, D] stock image features of the readable validation images, and their [N] labels."""
        if self._features is None:
            features, valid, _ = cached_features(learner, self.data, learner.backbone.device)
            labels = torch.tensor([r.label for r in self.data.records], dtype=torch.long)
            self._features = features[valid.to(features.device)], labels[valid]
        return self._features
