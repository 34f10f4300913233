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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from models.backbone import Backbone
from models.prompts import PromptLearner
from service.catalog.text_cache import TextCache
from service.catalog.versions import Version, build_learner
from service.engine.batcher import Batcher
from service.errors import Conflict, Invalid, NotFound, ServiceError
from service.metrics import Metrics
from service.settings import ZEROSHOT_MODEL

log = logging.getLogger("clipserve")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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
        if name not in self.active and name not in self.aliases:  # resolve("") would mean "the default"
            raise NotFound(f"no model or alias named {name!r}")
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
