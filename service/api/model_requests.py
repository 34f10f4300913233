"""clipserve_model_requests{model, code}: inference requests per model. The label is the name of a
loaded model (an alias or the default resolved to it) or 'unknown', so its values are bounded by
the models an operator loaded, never taken from what a request says. Protocol routes count here too."""

from __future__ import annotations

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
