"""Pieces every protocol parser shares: a JSON body into a pydantic model with clear 400/422s, and
images given as text (base64, a data: URI, or where the operator allows it a URL) into bytes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from service.api.fetch_url import fetch_images, is_url
from service.api.parse import _b64, _summarise
from service.errors import BadInput, Invalid
from service.settings import Settings

M = TypeVar("M", bound=BaseModel)


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


async def images_from_text(values: Sequence[str], settings: Settings) -> list[bytes]:
    """Images given as text -> their bytes: base64 or a data: URI decoded here; an http(s) URL
    fetched by service.api.fetch_url, which refuses it (403) unless image_url_allow lets it through,
    exactly as for JSON /classify."""
    urls = {i: value for i, value in enumerate(values) if is_url(value)}
    images = [b"" if i in urls else _b64(value, i) for i, value in enumerate(values)]
    for index, data in zip(urls, await fetch_images(list(urls.values()), settings), strict=True):
        images[index] = data
    return images


def content_type(request: Request) -> str:
    """The media type alone, lower case ('' when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()
