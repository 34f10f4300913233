"""One loaded version of a model: its learner, stored class embeddings and lane; and how a
checkpoint file becomes one (load, verify against the running backbone, warm)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.backbone import Backbone, file_sha256
from models.checkpoint import (
    BackboneMismatchError,
    CheckpointCorruptError,
    CheckpointError,
    CheckpointNotFoundError,
    CheckpointVersionError,
    load_checkpoint,
)
from models.prompts import METHODS, PromptLearner
from models.transfer import to_device
from models.zeroshot import class_embedding_matrix
from service.engine.batcher import Lane
from service.errors import Conflict, Invalid, NotFound, ServiceError
from service.settings import ZEROSHOT_MODEL


@dataclass(eq=False)
class Version:
    model: str
    number: int
    method: str
    source: str
    sha256: str
    backbone: Backbone
    learner: PromptLearner | None  # None: the built-in zero-shot model
    classnames: list[str]
    class_embeddings: torch.Tensor | None  # [C, D] precomputed, on the device
    logit_scale: float
    lane: Lane | None = None
    created: int = field(default_factory=lambda: int(time.time()))  # Unix seconds it was recorded
    refs: int = 0
    retired: bool = False
    freed: bool = False
    class_index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.class_index = {name: i for i, name in enumerate(self.classnames)}

    @property
    def uid(self) -> str:
        return f"{self.model}@{self.number}"

    @property
    def image_conditioned(self) -> bool:
        return self.learner is not None and self.learner.image_conditioned

    def ref(self) -> dict[str, Any]:
        return {"name": self.model, "version": str(self.number), "method": self.method, "sha256": self.sha256}

    def resolve(
        self, labels: Sequence[str] | None, templates: Sequence[str] | None, zeroshot_templates: Sequence[str]
    ) -> tuple[list[str], tuple[str, ...]]:
        """The labels and templates a request is scored with: its own, or this version's defaults."""
        if self.learner is None:
            if not labels:
                raise Invalid(f"the {self.model} model has no classes of its own; pass labels")
            return list(labels), tuple(templates or zeroshot_templates)
        if templates:
            raise Invalid(
                f"templates apply to the {ZEROSHOT_MODEL} model only; model {self.model!r} "
                f"({self.method}) classifies with its learned prompt"
            )
        return list(labels or self.classnames), ()

    def precomputed_covers(self, labels: Sequence[str], templates: Sequence[str]) -> bool:
        index = self.class_index
        return self.class_embeddings is not None and not templates and all(n in index for n in labels)

    def stored_row(self, label: str, templates: Sequence[str]) -> torch.Tensor | None:
        """[D] the checkpoint's stored embedding of a trained class, else None."""
        if self.class_embeddings is None or templates or label not in self.class_index:
            return None
        return self.class_embeddings[self.class_index[label]]

    def precomputed_rows(self, labels: Sequence[str]) -> torch.Tensor:
        """[C, D] stored rows of `labels`, on the current stream (the text stream, on the event loop)."""
        assert self.class_embeddings is not None
        if list(labels) == self.classnames:
            return self.class_embeddings
        # Pinned + non-blocking: `torch.tensor(..., device=cuda)` copies from pageable memory, which
        # would stall the event loop until the GPU had run everything queued before it.
        rows = to_device(torch.tensor([self.class_index[n] for n in labels]), self.class_embeddings.device)
        return self.class_embeddings.index_select(0, rows)  # [C, D]

    def encode_labels(self, labels: list[str], templates: tuple[str, ...]) -> torch.Tensor:
        """[C, D] normalised; runs on the text thread through the one text path."""
        with torch.no_grad():
            if self.learner is None:
                return class_embedding_matrix(self.backbone, labels, templates)
            return self.learner.class_embeddings(labels).float()

    def describe(self) -> dict[str, Any]:
        lane = self.lane.kind if self.lane is not None else None
        return {
            **self.ref(),
            "source": self.source,
            "classes": len(self.classnames),
            "lane": lane,
            "created": self.created,
        }


def map_checkpoint_error(error: CheckpointError) -> ServiceError:
    """The client sees the file's name and the reason, never the server's folder path."""
    path = Path(error.path)
    where = f"{path.name}: {error.reason.replace(str(path.parent), '<checkpoint_dir>')}"
    if isinstance(error, CheckpointNotFoundError):
        return NotFound(f"checkpoint not found: {where}")
    if isinstance(error, CheckpointCorruptError):
        return Invalid(f"corrupt checkpoint refused: {where}")
    if isinstance(error, BackboneMismatchError | CheckpointVersionError):
        return Conflict(f"incompatible checkpoint refused: {where}")
    return Invalid(f"checkpoint refused: {where}")


def build_learner(backbone: Backbone, path: Path) -> tuple[PromptLearner, torch.Tensor | None, str]:
    """Load, verify and warm a prompt checkpoint (blocking; runs on a worker thread)."""
    sha256 = file_sha256(path) if path.is_file() else ""
    try:
        checkpoint = load_checkpoint(path, expected_backbone=backbone.identity)
    except CheckpointError as error:
        raise map_checkpoint_error(error) from error
    header = checkpoint.header
    if header.kind != "prompts":
        raise Conflict(f"{path.name}: a {header.kind!r} checkpoint is not a servable prompt checkpoint")
    method = METHODS.get(header.method)
    if method is None:
        raise Conflict(
            f"{path.name}: method {header.method!r} is not in this build (known: {', '.join(METHODS)})"
        )
    try:
        learner = method.from_checkpoint(backbone, checkpoint)
    except (RuntimeError, ValueError, TypeError, KeyError) as error:
        raise Conflict(f"{path.name}: tensors do not fit method {header.method!r}: {error}") from error
    embeddings = None
    if checkpoint.class_embeddings is not None:
        embeddings = checkpoint.class_embeddings.to(backbone.device, torch.float32)
    warm(learner)
    if backbone.device.type == "cuda":
        # Load time, on a worker thread: the lanes and the text stream never wait for the default
        # stream per batch, so everything this load queued there is finished before it serves.
        torch.cuda.current_stream(backbone.device).synchronize()
    return learner, embeddings, sha256


def warm(learner: PromptLearner) -> None:
    """One pass through the version's own image side, so its first request pays no set-up."""
    size = learner.backbone.preprocessing.image_size
    pixels = torch.zeros(1, 3, size, size, device=learner.backbone.device)
    with torch.no_grad():
        if learner.image_conditioned:
            learner.logits(pixels, learner.classnames[:1])
        elif learner.custom_image_encoder:
            learner.image_embeddings(pixels)
