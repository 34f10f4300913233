"""GET /v1/models: loaded models, their active versions, aliases, and the effective settings;
GET /v1/models/{id}: one model. Items carry OpenAI's model fields (id, object, created, owned_by)
beside clipserve's, so `openai` clients can list and retrieve them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.api.routes.deps import RuntimeDep
from service.api.routes.error_docs import LOOKUP, error_responses

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


def openai_item(item: dict[str, Any]) -> dict[str, Any]:
    """A version's description as an OpenAI model object: `id` is the model name, `created` the
    Unix time its active version was loaded."""
    return {"id": item["name"], "object": "model", "created": item["created"], "owned_by": OWNER, **item}


@router.get("/v1/models", summary="Loaded models and versions")
async def list_models(runtime: RuntimeDep) -> dict[str, Any]:
    backbone = runtime.backbone
    listing = runtime.registry.describe()
    listing["data"] = [openai_item(item) for item in listing["data"]]
    listing = {"object": "list", **listing}
    listing["refused_files"] = dict(runtime.watcher.errors) if runtime.watcher is not None else {}
    listing["backbone"] = {
        **backbone.identity.to_dict(),
        "device": str(backbone.device),
        "precision": backbone.precision,
        "image_size": backbone.preprocessing.image_size,
    }
    listing["settings"] = {key: getattr(runtime.settings, key) for key in REPORTED}
    return listing


@router.get(
    "/v1/models/{model_id}",
    summary="One loaded model (a name or an alias)",
    responses=error_responses(LOOKUP),
)
async def retrieve_model(model_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    return openai_item(runtime.registry.resolve(model_id).describe())  # 404 names the loaded models
