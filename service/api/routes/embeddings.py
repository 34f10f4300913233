"""POST /v1/embeddings: OpenAI's embeddings shape for texts and (modality "image") images. Parsing
and answer shape in service.api.protocols.embeddings; the data path in service.api.embed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.requests import Request

from service.api.deadline import deadline
from service.api.embed import embed_images, embed_texts
from service.api.json_response import ORJSONResponse
from service.api.model_requests import counted
from service.api.openapi import INFERENCE_ERRORS, error_responses, inline_schema
from service.api.parse import read_body
from service.api.protocols.common import content_type
from service.api.protocols.embeddings import (
    EmbeddingsJSON,
    check_dimensions,
    embeddings_answer,
    parse_embeddings,
)
from service.api.routes.classify import ModelRef
from service.api.routes.deps import RuntimeDep
from service.errors import UnsupportedMedia

router = APIRouter(tags=["OpenAI"])


class EmbeddingItem(BaseModel):
    object: str
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: str
    data: list[EmbeddingItem]
    model: str
    usage: Usage
    model_info: ModelRef


REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": inline_schema(EmbeddingsJSON)}},
    }
}


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingsResponse,
    openapi_extra=REQUEST_BODY,
    responses=error_responses(*INFERENCE_ERRORS),
    summary="Embeddings of texts or images (OpenAI's shape)",
    description="L2-normalised vectors. Texts go through the model's prompt (`prompt`: `model`, "
    'the default) or the plain text tower (`none`); `"modality": "image"` takes images as base64 '
    "or data: URIs. `encoding_format` float or base64 (little-endian float32).",
)
async def create_embeddings(request: Request, runtime: RuntimeDep) -> ORJSONResponse:
    # admitted by service.api.admission like /classify; the deadline covers reading the body too
    async with counted(runtime) as tally, deadline(runtime.settings):
        if content_type(request) != "application/json":
            raise UnsupportedMedia("send the request as application/json")
        body = await read_body(request, runtime.settings.max_body_bytes)
        parsed = await parse_embeddings(body, runtime.settings)
        tally.name(parsed.model)
        check_dimensions(parsed.dimensions, runtime.backbone.embed_dim)
        if parsed.images is not None:
            embedded = await embed_images(runtime, parsed.model, parsed.images)
        else:
            assert parsed.texts is not None
            embedded = await embed_texts(runtime, parsed.model, parsed.texts, parsed.prompt)
        return ORJSONResponse(embeddings_answer(embedded, parsed.encoding))
