"""The route dependencies run on the event loop: FastAPI hands a plain `def` dependency to its
thread pool on every request (a thread hand-off for an attribute lookup)."""

from __future__ import annotations

import inspect
import typing

from fastapi.params import Depends

from service.api.routes import deps


def test_every_shared_dependency_is_a_coroutine_function() -> None:
    dependencies = [deps.get_state, deps.get_runtime, deps.require_admin]
    for alias in (deps.RuntimeDep, deps.StateDep):
        (marker,) = [m for m in typing.get_args(alias)[1:] if isinstance(m, Depends)]
        dependencies.append(marker.dependency)  # type: ignore[arg-type]
    assert all(inspect.iscoroutinefunction(dependency) for dependency in dependencies)
