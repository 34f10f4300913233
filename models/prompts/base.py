"""The prompt-learner interface every method implements (see DESIGN.md).

- Built from (backbone, classnames, config). The frozen backbone is held as a plain attribute, not a
  submodule, so `state_dict()` holds the learned tensors only.
- `class_embeddings(classnames) -> [C, D]` normalised; the service caches these unless the method
  is image-conditioned.
- `image_embeddings(images) -> [B, D]` normalised; stock encoder unless the method changes it.
- `logits(images, classnames) -> [B, C]`; image-conditioned methods override it.
- `loss(batch) -> scalar`: cross-entropy by default; methods add their own terms.
The training loop and the service only ever talk to this interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from models.backbone import Backbone
from models.checkpoint import Checkpoint, CheckpointHeader


@dataclass
class Batch:
    """One training batch. `features` replaces `images` when the image tower is frozen and its
    outputs were cached; `views` holds the extra augmented views a method asks for."""

    labels: torch.Tensor  # [B] int64, indices into the learner's classnames
    images: torch.Tensor | None = None  # [B, 3, H, W] preprocessed
    features: torch.Tensor | None = None  # [B, D] normalised stock image features
    views: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [B, 3, H, W]


@dataclass
class LearnerConfig:
    """Fields shared by all methods; each method subclasses this with its own defaults."""

    n_ctx: int = 16
    ctx_init: str | None = None
    text_chunk: int = 1024  # classes per text-encoder call at inference, to bound memory


class PromptLearner(nn.Module):
    method: ClassVar[str]
    config_class: ClassVar[type[LearnerConfig]] = LearnerConfig
    # The text side depends on the image: class embeddings cannot be cached per label.
    image_conditioned: ClassVar[bool] = False
    # The image side is not stock CLIP: the service runs it in its own batching lane.
    custom_image_encoder: ClassVar[bool] = False
    # Extra augmented views of each raw training image the loss needs (names the data side knows).
    extra_views: ClassVar[tuple[str, ...]] = ()
    # Whether training may use cached stock image features instead of images.
    accepts_cached_features: ClassVar[bool] = True

    def __init__(self, backbone: Backbone, classnames: Sequence[str], config: LearnerConfig | None = None):
        super().__init__()
        if not classnames:
            raise ValueError("a prompt learner needs at least one class name")
        object.__setattr__(self, "backbone", backbone)  # deliberately not a submodule
        self.backbone: Backbone
        self.config = config if config is not None else self.config_class()
        self.classnames = list(classnames)

    # -- the interface -------------------------------------------------------------------------

    def class_embeddings(self, classnames: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, D] normalised; the frozen stock encoder by default."""
        return self.backbone.encode_images(images)

    def logits(self, images: torch.Tensor, classnames: Sequence[str]) -> torch.Tensor:
        """[B, 3, H, W] -> [B, C] scaled cosine similarities."""
        return self.scores(self.image_embeddings(images), self.class_embeddings(classnames))

    def loss(self, batch: Batch) -> torch.Tensor:
        features = batch.features if batch.features is not None else self._batch_image_features(batch)
        logits = self.scores(features, self.class_embeddings(self.classnames))
        return F.cross_entropy(logits, batch.labels.to(logits.device))

    # -- shared helpers ------------------------------------------------------------------------

    def scores(self, image_features: torch.Tensor, class_features: torch.Tensor) -> torch.Tensor:
        """[B, D] x [C, D] normalised -> [B, C] logits with CLIP's frozen temperature."""
        return self.backbone.logit_scale * image_features.float() @ class_features.float().t()

    def _batch_image_features(self, batch: Batch) -> torch.Tensor:
        if batch.images is None:
            raise ValueError(f"{self.method} needs images or cached features in the batch")
        return self.image_embeddings(batch.images)

    def to_checkpoint(
        self, provenance: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None
    ) -> Checkpoint:
        """The learned tensors plus, where cacheable, the trained classes' embeddings."""
        embeddings = None
        if not self.image_conditioned:
            with torch.no_grad():
                embeddings = self.class_embeddings(self.classnames).float().cpu()
        header = CheckpointHeader(
            kind="prompts",
            method=self.method,
            backbone=self.backbone.identity,
            config=asdict(self.config),
            classnames=self.classnames,
            preprocessing=self.backbone.preprocessing.to_dict(),
            logit_scale=self.backbone.logit_scale,
            provenance=provenance or {},
            metrics=metrics or {},
        )
        tensors = {k: v.detach().float().cpu() for k, v in self.state_dict().items()}
        return Checkpoint(header=header, tensors=tensors, class_embeddings=embeddings)

    @classmethod
    def from_checkpoint(cls, backbone: Backbone, checkpoint: Checkpoint) -> PromptLearner:
        """Rebuild the learner a checkpoint was saved from; strict about tensor names and shapes."""
        header = checkpoint.header
        if header.method != cls.method:
            raise ValueError(f"checkpoint holds method {header.method!r}, not {cls.method!r}")
        config = cls.config_class(**header.config)
        learner = cls(backbone, header.classnames, config)
        learner.load_state_dict(checkpoint.tensors, strict=True)
        return learner.to(backbone.device).eval()
