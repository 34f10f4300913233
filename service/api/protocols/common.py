"""Pieces every protocol parser shares besides service.api.parse.load_json (a JSON body into a
pydantic model with clear 400/422s): images given as text (base64, a data: URI, or where the
operator allows it a URL) into bytes."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request

from service.api.fetch_url import fetch_images, is_url
from service.api.parse import _b64
from service.settings import Settings


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
