"""/admin: load, swap, unload, default, aliases. Bearer token from settings; unset = disabled.

Files are named relative to checkpoint_dir (sub-folders allowed: the watcher only loads top-level
files, so keep explicitly managed versions in a sub-folder). Every change is recorded in
checkpoint_dir's state file and applied by the worker that answers before it answers; the other
worker processes (and replicas sharing the folder) apply it within `state_interval_s` or so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from service.api.openapi import error_responses
from service.api.routes.deps import RuntimeDep, require_admin
from service.errors import Conflict, Invalid
from service.runtime import Runtime

router = APIRouter(
    prefix="/admin",
    dependencies=[Depends(require_admin)],
    tags=["admin"],
    responses=error_responses(401, 403, 503),  # 403: admin disabled (no token set)
)


class VersionInfo(BaseModel):
    name: str
    version: str
    method: str
    sha256: str
    source: str
    classes: int
    lane: str | None


class LoadBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    file: str


class FileBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str


class ModelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str


def checkpoint_file(runtime: Runtime, file: str) -> Path:
    root = runtime.settings.checkpoint_dir
    if root is None:
        raise Conflict("no checkpoint_dir is configured; admin loads read files from it")
    refused = Invalid(f"file {file!r} must be a *.safetensors file inside checkpoint_dir (no dot-files)")
    try:
        path = (root / file).resolve()  # follows symlinks: a link out of the folder is refused too
    except (ValueError, OSError) as error:  # a NUL byte, a symlink loop, a name too long
        raise refused from error
    if not path.is_relative_to(root.resolve()) or path.name.startswith(".") or path.suffix != ".safetensors":
        raise refused
    return path


@router.post(
    "/models",
    status_code=201,
    summary="Load a checkpoint file as a new model",
    response_model=VersionInfo,
    responses=error_responses(400, 404, 409, 422),
)
async def load(body: LoadBody, runtime: RuntimeDep) -> dict[str, Any]:
    version = await runtime.registry.load(body.name, checkpoint_file(runtime, body.file), replace=False)
    return version.describe()


@router.post(
    "/models/{name}/swap",
    summary="Switch a model to a new file (zero downtime)",
    response_model=VersionInfo,
    responses=error_responses(400, 404, 409, 422),
)
async def swap(name: str, body: FileBody, runtime: RuntimeDep) -> dict[str, Any]:
    version = await runtime.registry.load(name, checkpoint_file(runtime, body.file), replace=True)
    return version.describe()


@router.delete(
    "/models/{name}",
    summary="Unload a model (freed once its requests finish)",
    responses=error_responses(404, 409),
)
async def unload(name: str, runtime: RuntimeDep) -> dict[str, str]:
    await runtime.registry.unload(name)
    return {"unloaded": name}


@router.put(
    "/default",
    summary="Set the model used when a request names none",
    responses=error_responses(400, 404, 422),
)
async def set_default(body: ModelBody, runtime: RuntimeDep) -> dict[str, str]:
    await runtime.registry.set_default(body.model)
    return {"default": body.model}


@router.put(
    "/aliases/{alias}", summary="Point an alias at a model", responses=error_responses(400, 404, 409, 422)
)
async def set_alias(alias: str, body: ModelBody, runtime: RuntimeDep) -> dict[str, str]:
    await runtime.registry.set_alias(alias, body.model)
    return {"alias": alias, "model": body.model}


@router.delete("/aliases/{alias}", summary="Remove an alias", responses=error_responses(404, 409))
async def remove_alias(alias: str, runtime: RuntimeDep) -> dict[str, str]:
    await runtime.registry.remove_alias(alias)
    return {"removed": alias}
