"""/classify request bodies -> ClassifyInput, with every request limit checked on the way in.

Three content types: multipart/form-data (repeated `images` files, `labels`, `templates`; `model`,
`top_k`), application/json (base64 images or image URLs), and a raw image body (image/*). The
fields other than images may also come as query parameters, with every content type. The body is
counted while it streams, so an oversized upload is refused at `max_body_bytes` instead of after
buffering it; multipart is then cut into parts by service.api.multipart (fast for requests with
many label fields).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, StrictInt, ValidationError
from starlette.requests import Request

from models.zeroshot import resolve_templates
from service.api.fetch_url import fetch_images, is_url
from service.api.multipart import MultipartError, TooManyFields, TooManyFiles, boundary_of, parse_multipart
from service.errors import BadInput, Invalid, TooLarge, UnsupportedMedia
from service.settings import Settings

CONTENT_TYPES = "multipart/form-data, application/json or an image/* body"
FIELDS = ("labels", "model", "top_k", "templates")  # besides the images; body fields or query parameters


class ClassifyJSON(BaseModel):
    """The JSON form of a /classify request."""

    model_config = ConfigDict(extra="forbid")
    images: list[str]  # base64, optionally as data: URIs, or http(s) URLs (when image_url_allow is set)
    labels: list[str] | None = None
    model: str | None = None
    top_k: StrictInt | None = None  # 2, not "2" or true
    templates: list[str] | None = None


@dataclass
class ClassifyInput:
    images: list[bytes]
    labels: list[str] | None
    model: str | None
    top_k: int
    templates: tuple[str, ...] | None
    urls: dict[int, str] = field(default_factory=dict)  # image index -> the URL it was fetched from


async def parse_classify(request: Request, settings: Settings) -> ClassifyInput:
    """Every content type also takes the fields as query parameters (the raw body has no other
    place for them); a field given both ways, or an unknown parameter, is refused, never ignored."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    query = _query(request)
    if content_type == "multipart/form-data":
        return await _parse_multipart(request, settings, query)
    if content_type == "application/json":
        parsed = _parse_json(await read_body(request, settings.max_body_bytes), settings, query)
        fetched = await fetch_images(list(parsed.urls.values()), settings)  # [] without URLs
        for index, data in zip(parsed.urls, fetched, strict=True):
            parsed.images[index] = data
        return parsed
    if content_type.startswith("image/"):
        body = await read_body(request, settings.max_body_bytes)
        return _validated(settings, [body], *_fields(query))
    raise UnsupportedMedia(f"content type {content_type or 'missing'!r}: send {CONTENT_TYPES}")


def _query(request: Request) -> dict[str, list[str]]:
    try:  # strictly: starlette's query_params would turn bytes that are not UTF-8 into U+FFFD
        query = parse_qs(
            request.scope["query_string"].decode("latin-1"), keep_blank_values=True, errors="strict"
        )
    except UnicodeDecodeError as error:
        raise BadInput(f"query string is not UTF-8 after percent-decoding ({error.reason})") from error
    unknown = set(query) - set(FIELDS)
    if unknown:
        raise Invalid(f"unknown query parameters: {', '.join(sorted(unknown))}")
    return query


def _merged(body: dict[str, list[str]], query: dict[str, list[str]]) -> dict[str, list[str]]:
    both = set(body) & set(query)
    if both:
        raise Invalid(
            f"{', '.join(sorted(both))} given both in the body and in the query string; give it once"
        )
    return {**body, **query}


def _fields(
    fields: dict[str, list[str]],
) -> tuple[list[str] | None, str | None, str | None, list[str] | None]:
    """labels, model, top_k, templates from form fields or query parameters."""
    return (
        fields.get("labels") or None,
        _single(fields, "model"),
        _single(fields, "top_k"),
        fields.get("templates") or None,
    )


async def _limited_stream(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body of {declared} bytes exceeds max_body_bytes={limit}")
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body exceeds max_body_bytes={limit}")
        yield chunk


async def read_body(request: Request, limit: int) -> bytes:
    return b"".join([chunk async for chunk in _limited_stream(request, limit)])


async def _parse_multipart(
    request: Request, settings: Settings, query: dict[str, list[str]]
) -> ClassifyInput:
    try:
        boundary = boundary_of(request.headers.get("content-type", ""))
        body = await read_body(request, settings.max_body_bytes)
        max_fields = settings.max_labels + settings.max_templates + 2  # + model, top_k
        parts = parse_multipart(body, boundary, settings.max_images, max_fields)
    except TooManyFiles as error:
        raise TooLarge(f"{error.count} images exceed max_images={settings.max_images}") from error
    except TooManyFields as error:
        raise Invalid(
            f"{error.count} form fields: at most max_labels={settings.max_labels} labels and "
            f"max_templates={settings.max_templates} templates"
        ) from error
    except MultipartError as error:
        raise BadInput(f"malformed multipart body: {error}") from error
    images: list[bytes] = []
    fields: dict[str, list[str]] = {}
    for part in parts:
        if part.name == "images":
            if part.filename is None:
                raise BadInput("`images` parts must be files (filename set), not plain fields")
            images.append(bytes(part.data))  # the one copy out of the body (decoders take bytes)
            continue
        try:  # form fields are UTF-8 text; never read undecodable bytes as something else
            fields.setdefault(part.name, []).append(str(part.data, "utf-8"))
        except UnicodeDecodeError as error:
            raise BadInput(f"form field {part.name!r} is not UTF-8 text") from error
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise Invalid(f"unknown form fields: {', '.join(sorted(unknown))}")
    return _validated(settings, images, *_fields(_merged(fields, query)))


M = TypeVar("M", bound=BaseModel)


def load_json(body: bytes, model: type[M]) -> M:
    """Malformed JSON is a 400; JSON of the wrong shape a 422 naming the fields (every JSON route)."""
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


def _parse_json(body: bytes, settings: Settings, query: dict[str, list[str]]) -> ClassifyInput:
    payload = load_json(body, ClassifyJSON)
    if len(payload.images) > settings.max_images:
        raise TooLarge(f"{len(payload.images)} images exceed max_images={settings.max_images}")
    urls = {i: image for i, image in enumerate(payload.images) if is_url(image)}
    images = [b"" if i in urls else _b64(image, i) for i, image in enumerate(payload.images)]
    fields = {
        "labels": payload.labels,
        "model": None if payload.model is None else [payload.model],
        "top_k": None if payload.top_k is None else [str(payload.top_k)],
        "templates": payload.templates,
    }
    given = {key: value for key, value in fields.items() if value is not None}
    parsed = _validated(settings, images, *_fields(_merged(given, query)))
    parsed.urls = urls
    return parsed


def _single(fields: dict[str, list[str]], key: str) -> str | None:
    values = fields.get(key) or []
    if len(values) > 1:
        raise Invalid(f"field {key!r} given {len(values)} times; give it once")
    return values[0] if values else None


def _b64(data: str, index: int) -> bytes:
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadInput(f"image {index}: not valid base64 ({error})") from error


def _validated(
    settings: Settings,
    images: list[bytes],
    labels: list[str] | None,
    model: str | None,
    top_k: str | None,
    templates: list[str] | None,
) -> ClassifyInput:
    if not images:
        raise Invalid("at least one image is required (`images`)")
    if len(images) > settings.max_images:
        raise TooLarge(f"{len(images)} images exceed max_images={settings.max_images}")
    if labels is not None:
        _check_labels(labels, settings)
    resolved = None
    if templates is not None:
        if len(templates) > settings.max_templates:
            raise Invalid(f"{len(templates)} templates exceed max_templates={settings.max_templates}")
        try:
            resolved = resolve_templates(templates[0] if len(templates) == 1 else templates)
        except ValueError as error:
            raise Invalid(str(error)) from error
    return ClassifyInput(images, labels, model or None, _top_k(top_k, settings), resolved)


def _check_labels(labels: list[str], settings: Settings) -> None:
    if len(labels) > settings.max_labels:
        raise Invalid(f"{len(labels)} labels exceed max_labels={settings.max_labels}")
    for label in labels:
        if not label.strip():
            raise Invalid("labels must not be empty")
        if len(label) > settings.max_label_chars:
            raise Invalid(
                f"label {label[:40]!r}... has {len(label)} characters; "
                f"max_label_chars={settings.max_label_chars}"
            )
    if len(set(labels)) != len(labels):
        raise Invalid("labels must be unique")


def _top_k(value: str | None, settings: Settings) -> int:
    if value is None:
        return settings.default_top_k
    try:
        top_k = int(value)
    except ValueError as error:
        raise Invalid(f"top_k must be a positive integer, got {value!r}") from error
    if top_k < 1:
        raise Invalid(f"top_k must be a positive integer, got {top_k}")
    return top_k


def _summarise(error: ValidationError) -> str:
    problems = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()[:5]]
    return "invalid JSON request: " + "; ".join(problems)
