"""JSON responses serialised by orjson: the same JSON as starlette's JSONResponse writes.

starlette renders with json.dumps(ensure_ascii=False, allow_nan=False, separators=(",", ":")):
for a 32-image /classify answer that is ~100 us of the event loop's time, orjson ~10 us. The two
write the same values (floats as shortest round-trip reprs, UTF-8 text unescaped, int/bool/None
keys as their JSON text with OPT_NON_STR_KEYS); bytes differ only in an exponent's spelling
(orjson 1e-7, json 1e-07: the same number). orjson cannot be trusted where it writes NaN and
+-inf as null and where it refuses integers beyond 64 bits or nesting past 254. So an output that
contains "null", or that orjson refuses, is rendered by json.dumps, which raises on NaN/inf
exactly as before (a 500, never a silent null) and writes a real null identically.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.responses import JSONResponse

OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(content: Any, allow_nan: bool = False) -> bytes:
    """`content` as compact UTF-8 JSON. NaN or infinity: ValueError (JSON has neither), or with
    `allow_nan` written as json.dumps does (NaN, Infinity: what the /v2 answers always wrote)."""
    try:
        rendered = orjson.dumps(content, option=OPTIONS)
    except TypeError:  # an int beyond 64 bits, nesting past 254 ...: json.dumps decides
        return _standard(content, allow_nan)
    if b"null" in rendered:  # a NaN/inf orjson wrote as null, or a real None: json.dumps tells
        return _standard(content, allow_nan)
    return rendered


def _standard(content: Any, allow_nan: bool) -> bytes:
    text = json.dumps(content, ensure_ascii=False, allow_nan=allow_nan, separators=(",", ":"))
    return text.encode()


class ORJSONResponse(JSONResponse):
    """starlette's JSONResponse with its render done by `dumps`; the app's default response class."""

    def render(self, content: Any) -> bytes:
        return dumps(content)
