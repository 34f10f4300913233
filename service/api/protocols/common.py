"""Pieces every protocol parser shares: a JSON body into a pydantic model with clear 400/422s, and
an image given as text (base64 or a data: URI) into its bytes."""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from service.api.parse import _b64, _summarise
from service.errors import BadInput, Invalid

M = TypeVar("M", bound=BaseModel)
URL_SCHEMES = ("http://", "https://")


def load_json(body: bytes, model: type[M]) -> M:
    """Malformed JSON is a 400; JSON of the wrong shape a 422 naming the fields."""
    try:
        return model.model_validate(json.loads(body))
    except json.JSONDecodeError as error:
        raise BadInput(f"body is not valid JSON: {error}") from error
    except UnicodeDecodeError as error:
        raise BadInput(f"JSON body is not UTF-8 text ({error.reason} at byte {error.start})") from error
    except RecursionError as error:
        raise BadInput("JSON body is nested too deeply") from error
    except ValidationError as error:
        raise Invalid(_summarise(error)) from error


def image_from_text(value: str, index: int) -> bytes:
    """base64 or a data: URI -> the encoded image. URLs are refused: this server fetches nothing."""
    if value.startswith(URL_SCHEMES):
        raise BadInput(
            f"image {index}: image URLs are not fetched by this server; send the image itself as "
            "base64 or a data: URI"
        )
    return _b64(value, index)


def content_type(request: Request) -> str:
    """The media type alone, lower case ('' when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()
