"""The prompt-learner interface every method implements (see DESIGN.md).

- Built from (backbone, classnames, config). The frozen backbone is held as a plain attribute, not a
  submodule, so `state_dict()` holds the learned tensors only. `classnames` is the label space:
  batch labels index into it, and checkpoints precompute its class embeddings.
- `class_embeddings(classnames) -> [C, D]` normalised; the service caches these unless the method
  is image-conditioned (then it raises: use `logits`).
- `image_embeddings(images) -> [B, D]` normalised; stock encoder unless the method changes it.
- `logits(images, classnames) -> [B, C]`; image-conditioned methods override it.
- `loss(batch) -> scalar`: cross-entropy by default; methods add their own terms.
The training loop and the service only ever talk to this interface.

Contract with the one training loop (no method-specific branches):
- Batches: `Batch.labels` always; `Batch.images` preprocessed with `backbone.preprocessing`, or
  `Batch.features` (cached stock image features) when `accepts_cached_features` is True and the
  loop chose to cache; `Batch.views[name]` for every name in `extra_views`, each made per image
  from the *raw* image by the data side and preprocessed like `images` (GOPro: "moco", "augmix").
- Stages: `training_stages` names the stages in order (one, "train", for most methods). For each
  stage the loop calls `set_stage(stage)`, builds a fresh optimiser over `trainable_parameters()`
  (settings may be keyed by stage name in the loop's config), and runs its epochs calling
  `loss(batch)`. SHIP has two: "generator" (the VAE) then "classifier" (CoOp on real + synthetic
  features); see `ship.py`.
- Modes: the loop calls `learner.train()` / `.eval()`; the backbone is never a submodule, so it
  stays frozen and in eval mode whatever the loop does.
- Export: the loop writes `serving_learner().to_checkpoint(...)`. That is the learner itself for
  most methods; SHIP hands back its stage-B CoOp, so the served artefact is a plain CoOp context.
- Backbones: a method that needs a ViT image tower sets `requires_vit` and raises
  UnsupportedBackboneError at construction on anything else.
- Precision: learned tensors stay fp32; the frozen towers run in the backbone's cast dtype (or
  under the loop's autocast) with layer norms in fp32 (open_clip's LayerNormFp32).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer
from torch import nn

from models.backbone import Backbone, BackboneError
from models.checkpoint import Checkpoint, CheckpointHeader


class UnsupportedBackboneError(BackboneError, ValueError):
    """The method cannot run on this backbone (e.g. MaPLe or GOPro on a ResNet image tower)."""


DEFAULT_STAGE = "train"


def vision_transformer(backbone: Backbone, method: str) -> VisionTransformer:
    """The backbone's image tower if it is an open_clip ViT; a clear error otherwise."""
    visual = backbone.model.visual
    if not isinstance(visual, VisionTransformer):
        raise UnsupportedBackboneError(
            f"{method} needs a ViT image tower (it reads or prompts the transformer's tokens); "
            f"{backbone.identity.arch} has a {type(visual).__name__}. Use a ViT backbone "
            f"(e.g. ViT-B-16), or a method that works on any tower (coop, cocoop, ship)"
        )
    return visual


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
    # Text sequences per text-encoder call at inference (classes; for image-conditioned methods,
    # image x class pairs), so memory is bounded by the chunk, not by the number of classes.
    text_chunk: int = 1024


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
    # The image tower must be an open_clip VisionTransformer (the method reads or changes its tokens).
    requires_vit: ClassVar[bool] = False
    # Training stages in order; the loop calls set_stage() and builds a new optimiser for each.
    training_stages: ClassVar[tuple[str, ...]] = (DEFAULT_STAGE,)

    def __init__(self, backbone: Backbone, classnames: Sequence[str], config: LearnerConfig | None = None):
        super().__init__()
        if not classnames:
            raise ValueError("a prompt learner needs at least one class name")
        if self.requires_vit:
            vision_transformer(backbone, self.method)
        object.__setattr__(self, "backbone", backbone)  # deliberately not a submodule
        self.backbone: Backbone
        self.config = config if config is not None else self.config_class()
        self.classnames = list(classnames)
        self.stage = self.training_stages[0]

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
        logits = self.scores(self._batch_image_features(batch), self.class_embeddings(self.classnames))
        return F.cross_entropy(logits, batch.labels.to(logits.device))

    # -- training stages and export (see the module docstring) ---------------------------------

    def set_stage(self, stage: str) -> None:
        """Enter a training stage; methods with several stages also switch what is trainable."""
        if stage not in self.training_stages:
            raise ValueError(f"{self.method} has training stages {self.training_stages}, not {stage!r}")
        self.stage = stage

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the optimiser of the current stage updates."""
        return [p for p in self.parameters() if p.requires_grad]

    def serving_learner(self) -> PromptLearner:
        """The learner to export and serve once training is done (itself unless a method says)."""
        return self

    # -- shared helpers ------------------------------------------------------------------------

    def scores(self, image_features: torch.Tensor, class_features: torch.Tensor) -> torch.Tensor:
        """[B, D] x [C, D] normalised -> [B, C] logits with CLIP's frozen temperature."""
        return self.backbone.logit_scale * image_features.float() @ class_features.float().t()

    def _batch_image_features(self, batch: Batch) -> torch.Tensor:
        """[B, D] normalised: the cached stock features if usable, else the images encoded."""
        if batch.features is not None and self.accepts_cached_features:
            return batch.features.to(self.backbone.device).float()
        if batch.images is None:
            needs = "images or cached features" if self.accepts_cached_features else "images"
            raise ValueError(f"{self.method} needs {needs} in the batch")
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
        # Floats are stored as fp32; integer buffers (BatchNorm's step count) keep their dtype.
        tensors = {
            k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu()
            for k, v in self.state_dict().items()
        }
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
