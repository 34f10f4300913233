"""clipserve_model_requests{model, code}: inference requests per model. The label is the name of a
loaded model (an alias or the default resolved to it) or 'unknown', so its values are bounded by
the models an operator loaded, never taken from what a request says. Protocol routes count here too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from service.errors import ServiceError
from service.runtime import Runtime

UNKNOWN = "unknown"


def model_label(runtime: Runtime, requested: str | None) -> str:
    registry = runtime.registry
    name = requested or registry.default
    name = registry.aliases.get(name, name)
    return name if name in registry.active else UNKNOWN


def count_model_request(runtime: Runtime, label: str, status: int) -> None:
    """`label`: model_label(...) of what the request named, or UNKNOWN when it was refused before
    naming one (a body that could not be parsed)."""
    runtime.metrics.model_requests.labels(model=label, code=str(status)).inc()


@dataclass
class Tally:
    """What a request named, once it has named it (None: the default model)."""

    named: bool = False
    model: str | None = None

    def name(self, model: str | None) -> None:
        self.named, self.model = True, model

    def label(self, runtime: Runtime) -> str:
        return model_label(runtime, self.model) if self.named else UNKNOWN


@asynccontextmanager
async def counted(runtime: Runtime) -> AsyncIterator[Tally]:
    """Counts one inference request of a protocol route under its model once it is answered: 200,
    or the status of the ServiceError it ended with (504 from the deadline inside included)."""
    tally = Tally()
    try:
        yield tally
    except ServiceError as error:
        count_model_request(runtime, tally.label(runtime), error.status)
        raise
    count_model_request(runtime, tally.label(runtime), 200)
