"""GET /v1/models: loaded models, their active versions, aliases, and the effective settings;
GET /v1/models/{id}: one model. Items carry OpenAI's model fields (id, object, created, owned_by)
beside clipserve's, so `openai` clients can list and retrieve them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request

from service.api.auth import is_admin
from service.api.openapi import error_responses
from service.api.routes.deps import RuntimeDep

router = APIRouter()
OWNER = "clipserve"

REPORTED = (
    "max_batch_size",
    "max_wait_ms",
    "max_queue_images",
    "max_inflight_requests",
    "request_timeout_s",
    "max_body_bytes",
    "max_images",
    "max_image_pixels",
    "max_labels",
    "max_label_chars",
    "max_templates",
    "image_formats",
    "default_top_k",
    "text_cache_entries",
    "backend",
)


ADMIN_ONLY = ("settings", "refused_files", "state")  # and each version's "source": server paths


@router.get(
    "/v1/models",
    summary="Loaded models and versions",
    description="Checkpoint file paths, refused files and the effective settings are shown only to "
    "requests that carry the admin token.",
    responses=error_responses(503),
)
async def list_models(request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    listing = describe_models(runtime)
    return listing if is_admin(request.headers, runtime.settings) else public_view(listing)


@router.get(
    "/v1/models/{model_id}",
    summary="One loaded model (a name or an alias)",
    responses=error_responses(404, 503),
)
async def retrieve_model(model_id: str, request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    item = openai_item(runtime.registry.resolve(model_id).describe())  # 404 names the loaded models
    return item if is_admin(request.headers, runtime.settings) else public_item(item)


def openai_item(item: dict[str, Any]) -> dict[str, Any]:
    """A version's description as an OpenAI model object: `id` is the model name, `created` the
    Unix time its active version was loaded."""
    return {"id": item["name"], "object": "model", "created": item["created"], "owned_by": OWNER, **item}


def public_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k != "source"}


def public_view(listing: dict[str, Any]) -> dict[str, Any]:
    """The listing without what only an operator should see: server paths and settings."""
    public = {key: value for key, value in listing.items() if key not in ADMIN_ONLY}
    public["data"] = [public_item(item) for item in listing.get("data", [])]
    return public


def describe_models(runtime: RuntimeDep) -> dict[str, Any]:
    backbone = runtime.backbone
    listing = {"object": "list", **runtime.registry.describe()}
    listing["data"] = [openai_item(item) for item in listing["data"]]
    listing["refused_files"] = dict(runtime.watcher.errors) if runtime.watcher is not None else {}
    listing["backbone"] = {
        **backbone.identity.to_dict(),
        "device": str(backbone.device),
        "precision": backbone.precision,
        "image_size": backbone.preprocessing.image_size,
    }
    listing["settings"] = {key: getattr(runtime.settings, key) for key in REPORTED}
    return listing
