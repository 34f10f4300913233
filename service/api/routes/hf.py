"""Hugging Face zero-shot image classification: POST / (the default model) and POST /models/{name},
so that `InferenceClient(base_url="http://host:8000")` and
`InferenceClient(base_url="http://host:8000/models/<name>")` reach them unchanged. Parsing and
answer shape in service.api.protocols.hf; the data path is /classify's."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request

from service.api.classify import score
from service.api.deadline import deadline
from service.api.json_response import ORJSONResponse
from service.api.model_requests import counted
from service.api.openapi import INFERENCE_ERRORS, error_responses, inline_schema
from service.api.protocols.hf import HFAnswerItem, HFRequest, hf_answer, parse_hf
from service.api.routes.deps import RuntimeDep
from service.runtime import Runtime

router = APIRouter(tags=["Hugging Face"])

REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": inline_schema(HFRequest)},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
DESCRIPTION = (
    "The Hugging Face zero-shot-image-classification task: `inputs` (base64 or a data: URI) and "
    "`parameters.candidate_labels` (a list or a comma-separated string), optional "
    "`parameters.hypothesis_template` (zeroshot model only) and `parameters.top_k`. Without "
    "candidate labels, or with a raw image body, the model's own classes (image-classification). "
    "Answers a list of {label, score} sorted by score."
)


@router.post(
    "/",
    response_model=list[HFAnswerItem],
    openapi_extra=REQUEST_BODY,
    responses=error_responses(*INFERENCE_ERRORS),
    summary="Hugging Face zero-shot image classification with the default model",
    description=DESCRIPTION,
)
async def hf_default_model(request: Request, runtime: RuntimeDep) -> ORJSONResponse:
    return await hf_classify(request, runtime, None)


@router.post(
    "/models/{name}",
    response_model=list[HFAnswerItem],
    openapi_extra=REQUEST_BODY,
    responses=error_responses(*INFERENCE_ERRORS),
    summary="Hugging Face zero-shot image classification with a named model",
    description=DESCRIPTION,
)
async def hf_named_model(name: str, request: Request, runtime: RuntimeDep) -> ORJSONResponse:
    return await hf_classify(request, runtime, name)


async def hf_classify(request: Request, runtime: Runtime, model: str | None) -> ORJSONResponse:
    # admitted by service.api.admission like /classify; the deadline covers reading the body too
    async with counted(runtime) as tally, deadline(runtime.settings):
        tally.name(model)
        parsed = await parse_hf(request, runtime.settings, model)
        answer = await score(runtime, parsed, lambda scored: hf_answer(scored, parsed.top_k))
        return ORJSONResponse(answer)
