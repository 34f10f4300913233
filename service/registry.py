"""Named models -> versions: load, hot swap, alias, default, unload.

A request acquires the version active at its arrival and holds a reference until it answers. A
swap loads and warms the new version next to the old one, then switches the name atomically (in
the event loop, between two requests' steps); the old version is retired and freed (own lane
closed, cached label embeddings dropped, tensors released) when its last request finishes. A
checkpoint that is corrupt (422) or incompatible (409) is refused and the running version keeps
serving.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
from models.zeroshot import class_embedding_matrix
from service.batcher import Batcher, Lane
from service.errors import Conflict, Invalid, NotFound, ServiceError
from service.metrics import Metrics
from service.settings import ZEROSHOT_MODEL
from service.text_cache import TextCache

log = logging.getLogger("clipserve")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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

    def check(self, labels: Sequence[str] | None, templates: Sequence[str] | None) -> None:
        if self.learner is None and not labels:
            raise Invalid(f"the {self.model} model has no classes of its own; pass labels")
        if self.learner is not None and templates:
            raise Invalid(
                f"templates apply to the {ZEROSHOT_MODEL} model only; model {self.model!r} "
                f"({self.method}) classifies with its learned prompt"
            )

    def precomputed_covers(self, labels: Sequence[str], templates: Sequence[str]) -> bool:
        index = self.class_index
        return self.class_embeddings is not None and not templates and all(n in index for n in labels)

    def precomputed_rows(self, labels: Sequence[str]) -> torch.Tensor:
        assert self.class_embeddings is not None
        if list(labels) == self.classnames:
            return self.class_embeddings
        rows = torch.tensor([self.class_index[n] for n in labels], device=self.class_embeddings.device)
        return self.class_embeddings.index_select(0, rows)  # [C, D]

    def encode_labels(self, labels: list[str], templates: tuple[str, ...]) -> torch.Tensor:
        """[C, D] normalised; runs on the text thread through the one text path."""
        with torch.no_grad():
            if self.learner is None:
                return class_embedding_matrix(self.backbone, labels, templates)
            return self.learner.class_embeddings(labels).float()

    def describe(self) -> dict[str, Any]:
        lane = self.lane.kind if self.lane is not None else None
        return {**self.ref(), "source": self.source, "classes": len(self.classnames), "lane": lane}


def map_checkpoint_error(error: CheckpointError) -> ServiceError:
    if isinstance(error, CheckpointNotFoundError):
        return NotFound(f"checkpoint not found: {error}")
    if isinstance(error, CheckpointCorruptError):
        return Invalid(f"corrupt checkpoint refused: {error}")
    if isinstance(error, BackboneMismatchError | CheckpointVersionError):
        return Conflict(f"incompatible checkpoint refused: {error}")
    return Invalid(f"checkpoint refused: {error}")


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


class Registry:
    def __init__(self, backbone: Backbone, batcher: Batcher, text: TextCache, metrics: Metrics) -> None:
        self.backbone, self.batcher, self.text, self.metrics = backbone, batcher, text, metrics
        self.active: dict[str, Version] = {}
        self.aliases: dict[str, str] = {}
        self.default = ZEROSHOT_MODEL
        self.retired: list[Version] = []
        self.numbers: dict[str, int] = {}
        self.lock = asyncio.Lock()
        self.sources: dict[str, Path] = {}  # model -> file of its active version

    # -- requests --------------------------------------------------------------------------------

    def resolve(self, name: str | None) -> Version:
        name = name or self.default
        target = self.aliases.get(name, name)
        version = self.active.get(target)
        if version is None:
            known = ", ".join(sorted([*self.active, *self.aliases]))
            raise NotFound(f"unknown model {name!r}; loaded: {known}")
        return version

    @contextmanager
    def acquire(self, name: str | None) -> Iterator[Version]:
        version = self.resolve(name)
        version.refs += 1
        try:
            yield version
        finally:
            version.refs -= 1
            if version.retired and version.refs == 0:
                self._free(version)

    # -- loading -----------------------------------------------------------------------------

    def add_zeroshot(self) -> Version:
        version = Version(
            model=ZEROSHOT_MODEL,
            number=1,
            method="zeroshot",
            source=f"{self.backbone.identity.arch} ({self.backbone.identity.weights})",
            sha256="",
            backbone=self.backbone,
            learner=None,
            classnames=[],
            class_embeddings=None,
            logit_scale=self.backbone.logit_scale,
        )
        version.lane = self.batcher.shared
        self._install(version)
        return version

    async def load(self, name: str, path: Path, replace: bool) -> Version:
        """Load `path` as a new version of `name`; `replace=False` refuses an existing name."""
        check_name(name)
        async with self.lock:
            if name in self.aliases or (not replace and name in self.active):
                raise Conflict(f"{name!r} is already a {'model' if name in self.active else 'alias'}")
            swap = name in self.active
            started = time.monotonic()
            try:
                learner, embeddings, sha256 = await asyncio.to_thread(build_learner, self.backbone, path)
            except ServiceError as error:
                self.metrics.loads.labels(result=_load_result(error)).inc()
                if swap:
                    self.metrics.swaps.labels(result="refused").inc()
                log.warning("checkpoint refused: %s", error.message)
                raise
            version = self._new_version(name, path, learner, embeddings, sha256)
            self.metrics.load_duration.observe(time.monotonic() - started)
            self.metrics.loads.labels(result="ok").inc()
            if swap:
                self.metrics.swaps.labels(result="ok").inc()
            self._install(version)
            self.sources[name] = path
            log.info("model %s version %d loaded from %s (%s)", name, version.number, path, version.method)
            return version

    def _new_version(
        self, name: str, path: Path, learner: PromptLearner, embeddings: torch.Tensor | None, sha256: str
    ) -> Version:
        self.numbers[name] = self.numbers.get(name, 0) + 1
        version = Version(
            model=name,
            number=self.numbers[name],
            method=learner.method,
            source=str(path),
            sha256=sha256,
            backbone=self.backbone,
            learner=learner,
            classnames=list(learner.classnames),
            class_embeddings=embeddings,
            logit_scale=self.backbone.logit_scale,
        )
        version.lane = self.batcher.lane_for(learner, version.logit_scale)
        return version

    def _install(self, version: Version) -> None:
        old = self.active.get(version.model)
        self.active[version.model] = version  # the switch: requests arriving from now on get it
        self.metrics.model_info.labels(model=version.model).info(
            {"version": str(version.number), "method": version.method, "sha256": version.sha256}
        )
        if old is not None:
            self._retire(old)
        self._count_versions()

    def _retire(self, version: Version) -> None:
        version.retired = True
        self.retired.append(version)
        if version.refs == 0:
            self._free(version)

    def _free(self, version: Version) -> None:
        if version.freed:
            return
        version.freed = True
        if version in self.retired:
            self.retired.remove(version)
        if version.lane is not None and version.lane is not self.batcher.shared:
            asyncio.get_running_loop().create_task(version.lane.close())
        self.text.drop_version(version.uid)
        version.learner, version.class_embeddings, version.lane = None, None, None
        self._count_versions()
        log.info("model %s version %d freed", version.model, version.number)

    def _count_versions(self) -> None:
        self.metrics.versions_in_memory.set(len(self.active) + len(self.retired))

    # -- admin -------------------------------------------------------------------------------

    def unload(self, name: str) -> None:
        if name == ZEROSHOT_MODEL:
            raise Conflict(f"the built-in {ZEROSHOT_MODEL} model cannot be unloaded")
        if name not in self.active:
            raise NotFound(f"no model named {name!r}")
        if self.default == name or name in self.aliases.values():
            raise Conflict(f"{name!r} is the default or the target of an alias; point those elsewhere first")
        version = self.active.pop(name)
        self.sources.pop(name, None)
        self.metrics.model_info.remove(name)
        self._retire(version)
        self._count_versions()

    def set_default(self, name: str) -> None:
        self.resolve(name)
        self.default = name

    def set_alias(self, alias: str, target: str) -> None:
        check_name(alias)
        if alias in self.active:
            raise Conflict(f"{alias!r} is a model name; an alias cannot shadow it")
        if target not in self.active:
            raise NotFound(f"no model named {target!r}")
        self.aliases[alias] = target

    def remove_alias(self, alias: str) -> None:
        if alias not in self.aliases:
            raise NotFound(f"no alias named {alias!r}")
        if self.default == alias:
            raise Conflict(f"{alias!r} is the default model; set another default first")
        del self.aliases[alias]

    def describe(self) -> dict[str, Any]:
        return {
            "default": self.default,
            "aliases": dict(self.aliases),
            "data": [v.describe() for v in self.active.values()],
            "retired_in_flight": [{**v.ref(), "requests": v.refs} for v in self.retired],
        }

    async def close(self) -> None:
        for version in [*self.active.values(), *self.retired]:
            if version.lane is not None and version.lane is not self.batcher.shared:
                await version.lane.close()


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name) or name == ZEROSHOT_MODEL:
        raise Invalid(f"model name {name!r} must match {NAME_PATTERN.pattern} and not be {ZEROSHOT_MODEL!r}")


def _load_result(error: ServiceError) -> str:
    return {404: "not_found", 409: "incompatible", 422: "corrupt"}.get(error.status, "error")
