"""OpenAI-style embeddings: POST /v1/embeddings request and answer shapes.

Request (OpenAI's fields): `model`, `input` (a string or a list of them), `encoding_format`
("float", or "base64": little-endian float32 bytes, which the `openai` client asks for by
default), `dimensions` (must equal the model's width if given), `user` (ignored). Infinity's
extension for CLIP models: `modality` "text" (default) or "image" (then each input is an image as
base64, a data: URI, or where image_url_allow allows it a URL). And clipserve's `prompt` for
texts: "model" (default; the learned prompt or zero-shot templates) or "none" (the plain tower).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, StrictInt

from service.api.embed import Embedded, TextPrompt
from service.api.parse import load_json
from service.api.protocols.common import images_from_text
from service.errors import Invalid, TooLarge
from service.settings import Settings


class EmbeddingsJSON(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = None
    user: str | None = None
    modality: Literal["text", "image"] = "text"
    prompt: Literal["model", "none"] = "model"


@dataclass(frozen=True)
class EmbeddingsInput:
    model: str | None
    texts: list[str] | None  # modality text
    images: list[bytes] | None  # modality image
    prompt: TextPrompt
    encoding: Literal["float", "base64"]
    dimensions: int | None


async def parse_embeddings(body: bytes, settings: Settings) -> EmbeddingsInput:
    payload = load_json(body, EmbeddingsJSON)
    items = [payload.input] if isinstance(payload.input, str) else payload.input
    if not items:
        raise Invalid("input: give at least one item")
    if payload.modality == "image":
        if payload.prompt != "model":
            raise Invalid('prompt applies to text inputs ("modality": "text") only')
        if len(items) > settings.max_images:
            raise TooLarge(f"{len(items)} images exceed max_images={settings.max_images}")
        images = await images_from_text(items, settings)
        return EmbeddingsInput(payload.model or None, None, images, "model", *_output(payload))
    check_texts(items, settings)
    return EmbeddingsInput(payload.model or None, items, None, payload.prompt, *_output(payload))


def _output(payload: EmbeddingsJSON) -> tuple[Literal["float", "base64"], int | None]:
    return payload.encoding_format, payload.dimensions


def check_texts(texts: list[str], settings: Settings) -> None:
    """The limits labels have on /classify: count and length (422); empty texts are refused."""
    if len(texts) > settings.max_labels:
        raise Invalid(f"{len(texts)} texts exceed max_labels={settings.max_labels}")
    for i, text in enumerate(texts):
        if not text.strip():
            raise Invalid(f"input {i}: texts must not be empty")
        if len(text) > settings.max_label_chars:
            raise Invalid(f"input {i} has {len(text)} characters; max_label_chars={settings.max_label_chars}")


def check_dimensions(requested: int | None, width: int) -> None:
    if requested is not None and requested != width:
        raise Invalid(f"dimensions={requested}: this model's embeddings have {width} dimensions")


def embeddings_answer(embedded: Embedded, encoding: str) -> dict[str, Any]:
    """OpenAI's list shape, plus `model_info` naming the version that answered."""
    rows = embedded.vectors.numpy().astype("<f4")  # [N, D] little-endian float32
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(row, encoding)} for i, row in enumerate(rows)
    ]
    return {
        "object": "list",
        "data": data,
        "model": embedded.model["name"],
        "usage": {"prompt_tokens": embedded.tokens, "total_tokens": embedded.tokens},
        "model_info": embedded.model,
    }


def _encode(row: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(row.tobytes()).decode("ascii")
    return row.tolist()
