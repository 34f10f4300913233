"""The life of a model version, in one place:

    load -> (warmed, serving nothing) -> activate -> hold ... release -> retire -> free

- `load(path)`: read the checkpoint, verify it against the running backbone, warm its image side.
  The result (`Loaded`) serves nothing; dropping it costs nothing, so a load whose state is
  refused is simply forgotten.
- `activate(model, loaded, number, created)`: the switch. The version gets its number, the time
  it was recorded (both from the state file, so every worker agrees) and its lane, and
  requests arriving from now on get it (in the event loop, between two requests' steps); the
  version it replaces is retired.
- `hold(model)`: a request's reference to the active version, from its arrival until it answers.
- retire (by `activate` of a successor, or `deactivate`): no new requests; freed when the last
  request holding it answers, at once if none does.
- free: its own lane closed, its cached label embeddings dropped, its tensors released.

Names, aliases and the default are the registry's; which version a name should have is the state
file's. This class only keeps versions alive exactly as long as something uses them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from models.backbone import Backbone
from models.prompts import PromptLearner
from service.catalog.text_cache import TextCache
from service.catalog.versions import Version, build_learner
from service.engine.batcher import Batcher
from service.errors import Conflict, NotFound, ServiceError
from service.metrics import Metrics

log = logging.getLogger("clipserve")


@dataclass(frozen=True, eq=False)
class Loaded:
    """A checkpoint read, verified and warmed; serving nothing yet."""

    source: str
    sha256: str
    learner: PromptLearner | None  # None: the built-in zero-shot model
    class_embeddings: torch.Tensor | None  # [C, D] on the device


class Lifecycle:
    def __init__(self, backbone: Backbone, batcher: Batcher, text: TextCache, metrics: Metrics) -> None:
        self.backbone, self.batcher, self.text, self.metrics = backbone, batcher, text, metrics
        self.active: dict[str, Version] = {}
        self.retired: list[Version] = []

    def zeroshot(self) -> Loaded:
        identity = self.backbone.identity
        return Loaded(f"{identity.arch} ({identity.weights})", "", None, None)

    async def load(self, path: Path, swap: bool = False) -> Loaded:
        """Read, verify and warm `path` (on a worker thread); `swap`: it is to replace a version
        (for the swap metrics). Refusals raise the ServiceError the admin API answers with."""
        started = time.monotonic()
        try:
            learner, embeddings, sha256 = await asyncio.to_thread(_build_unchanged, self.backbone, path)
        except ServiceError as error:
            self.metrics.loads.labels(result=_load_result(error)).inc()
            if swap:
                self.metrics.swaps.labels(result="refused").inc()
            log.warning("checkpoint refused: %s", error.message)
            raise
        self.metrics.load_duration.observe(time.monotonic() - started)
        self.metrics.loads.labels(result="ok").inc()
        return Loaded(str(path), sha256, learner, embeddings)

    def activate(self, model: str, loaded: Loaded, number: int, created: int) -> Version:
        learner = loaded.learner
        version = Version(
            model=model,
            number=number,
            method=learner.method if learner is not None else "zeroshot",
            source=loaded.source,
            sha256=loaded.sha256,
            backbone=self.backbone,
            learner=learner,
            classnames=list(learner.classnames) if learner is not None else [],
            class_embeddings=loaded.class_embeddings,
            logit_scale=self.backbone.logit_scale,
            created=created,
        )
        version.lane = self.batcher.lane_for(learner, version.logit_scale)
        old = self.active.get(model)
        self.active[model] = version  # the switch: requests arriving from now on get it
        if old is not None:
            self.metrics.swaps.labels(result="ok").inc()
            self._retire(old)
        self._count()
        log.info("model %s version %d active (%s, %s)", model, number, version.method, version.source)
        return version

    def deactivate(self, model: str) -> None:
        self._retire(self.active.pop(model))
        self._count()

    @contextmanager
    def hold(self, model: str) -> Iterator[Version]:
        version = self.active.get(model)
        if version is None:
            raise NotFound(f"unknown model {model!r}")
        version.refs += 1
        try:
            yield version
        finally:
            version.refs -= 1
            if version.retired and version.refs == 0:
                self._free(version)

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
        self._count()
        log.info("model %s version %d freed", version.model, version.number)

    def _count(self) -> None:
        self.metrics.versions_in_memory.set(len(self.active) + len(self.retired))

    async def close(self) -> None:
        for version in [*self.active.values(), *self.retired]:
            if version.lane is not None and version.lane is not self.batcher.shared:
                await version.lane.close()


def _build_unchanged(backbone: Backbone, path: Path) -> tuple[PromptLearner, torch.Tensor | None, str]:
    """build_learner, refusing a file that was replaced while it was read: its sha256 (hashed
    first) would then name other bytes than the tensors loaded."""
    before = _identity(path)
    built = build_learner(backbone, path)
    if _identity(path) != before:
        raise Conflict(f"{path.name} changed while it was being loaded; it is read again when it settles")
    return built


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def _load_result(error: ServiceError) -> str:
    return {404: "not_found", 409: "incompatible", 422: "corrupt"}.get(error.status, "error")
