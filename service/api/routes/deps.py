"""Shared route dependencies: the app state, a ready runtime, and the admin bearer check.

All `async def`, though none awaits: FastAPI runs a plain `def` dependency on its thread pool, a
thread hand-off per request and dependency (13% of the busy-thread samples of a py-spy profile of
bench/overhead.py's single-image load) for what is an attribute lookup."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from service.errors import Forbidden, Unauthorized
from service.runtime import Runtime, State


def state_of(request: Request) -> State:
    state: State = request.app.state.clipserve
    return state


async def get_state(request: Request) -> State:
    return state_of(request)


async def get_runtime(request: Request) -> Runtime:
    return state_of(request).require_runtime()


async def require_admin(request: Request) -> None:
    token = state_of(request).settings.admin_token
    if token is None:
        raise Forbidden("admin routes are disabled: set CLIPSERVE_ADMIN_TOKEN to enable them")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized("admin routes need 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise Unauthorized("wrong admin token")


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
StateDep = Annotated[State, Depends(get_state)]
