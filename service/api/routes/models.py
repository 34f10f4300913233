"""GET /v1/models: loaded models, their active versions, aliases, and the effective settings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.api.routes.deps import RuntimeDep

router = APIRouter()

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


@router.get("/v1/models", summary="Loaded models and versions")
async def list_models(runtime: RuntimeDep) -> dict[str, Any]:
    backbone = runtime.backbone
    listing = runtime.registry.describe()
    listing["refused_files"] = dict(runtime.watcher.errors) if runtime.watcher is not None else {}
    listing["backbone"] = {
        **backbone.identity.to_dict(),
        "device": str(backbone.device),
        "precision": backbone.precision,
        "image_size": backbone.preprocessing.image_size,
    }
    listing["settings"] = {key: getattr(runtime.settings, key) for key in REPORTED}
    return listing
