"""Hugging Face inference tasks: zero-shot image classification (and plain image classification
against a checkpoint's own classes), in the request and answer shapes of the HF Inference API.

What `huggingface_hub.InferenceClient(base_url=URL)` sends, and therefore what this accepts:
- zero_shot_image_classification(image, candidate_labels, hypothesis_template=None):
  POST URL, JSON {"inputs": <base64 image>, "parameters": {"candidate_labels": [...],
  "hypothesis_template": "..."}} (hypothesis_template only when given);
- image_classification(image): POST URL with the raw image bytes (no parameters), or the JSON
  form with "parameters": {"top_k": k}.
The answer is a list of {"label", "score"} sorted by score (softmax over the labels at CLIP's
temperature, as /classify). The client downloads URLs itself and sends the bytes; a URL in
`inputs` is fetched only where image_url_allow allows it (as for JSON /classify), else 403.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, StrictInt
from starlette.requests import Request

from models.zeroshot import resolve_templates
from service.api.classify import Scored, top_k
from service.api.parse import ClassifyInput, _check_labels, load_json, read_body
from service.api.protocols.common import content_type, images_from_text
from service.errors import Invalid, UnsupportedMedia
from service.settings import Settings

EVERY_LABEL = 2**31 - 1  # HF answers score every candidate label
RAW_TYPES = ("", "application/octet-stream")


class HFParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    candidate_labels: list[str] | str | None = None  # a list, or one comma-separated string
    hypothesis_template: str | None = None  # e.g. "This is a photo of {}."
    top_k: StrictInt | None = None


class HFRequest(BaseModel):
    """The JSON form: one image and the task's parameters."""

    model_config = ConfigDict(extra="forbid")
    inputs: str  # base64, or a data: URI
    parameters: HFParameters | None = None
    options: dict[str, Any] | None = None  # the legacy API's options (wait_for_model, use_cache): ignored


class HFAnswerItem(BaseModel):
    label: str
    score: float


async def parse_hf(request: Request, settings: Settings, model: str | None) -> ClassifyInput:
    kind = content_type(request)
    if kind == "application/json":
        payload = load_json(await read_body(request, settings.max_body_bytes), HFRequest)
        parsed = hf_input(payload, settings, model)
        parsed.images = await images_from_text([payload.inputs], settings)
        return parsed
    if kind.startswith("image/") or kind in RAW_TYPES:  # image_classification: raw bytes
        body = await read_body(request, settings.max_body_bytes)
        return ClassifyInput([body], None, model, EVERY_LABEL, None)
    raise UnsupportedMedia(
        f"content type {kind!r}: send application/json ({{inputs, parameters}}) or the raw image"
    )


def hf_input(payload: HFRequest, settings: Settings, model: str | None) -> ClassifyInput:
    """Everything but the image, checked before any image is decoded or fetched."""
    parameters = payload.parameters or HFParameters()
    labels = candidate_labels(parameters.candidate_labels)
    if labels is not None:
        _check_labels(labels, settings)
    templates = None
    if parameters.hypothesis_template is not None:
        try:
            templates = resolve_templates([parameters.hypothesis_template])
        except ValueError as error:
            raise Invalid(f"hypothesis_template: {error}") from error
    k = parameters.top_k
    if k is not None and k < 1:
        raise Invalid(f"top_k must be a positive integer, got {k}")
    return ClassifyInput([], labels, model, k or EVERY_LABEL, templates)  # the image: parse_hf


def candidate_labels(value: list[str] | str | None) -> list[str] | None:
    if isinstance(value, str):
        return [label.strip() for label in value.split(",")]
    return value


def hf_answer(scored: Scored, k: int) -> list[dict[str, Any]]:
    """The one image's labels, best first: [{"label", "score"}, ...]."""
    predictions = top_k(scored.scores, scored.cosine, scored.labels, k)[0]["predictions"]
    return [{"label": p["label"], "score": p["score"]} for p in predictions]
