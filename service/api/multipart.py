"""multipart/form-data (RFC 7578) from a body already read in full (bounded by max_body_bytes).

Why not starlette's parser (python-multipart): it runs Python callbacks for every part and header,
about 25 us per part on the development machine. A request with 1,000 `labels` fields spent 25 ms
in it, more than everything else the service does for a request with cached labels. Here the
delimiters are found by `bytes.find` (C speed), each part's data is a memoryview of the body (an
image is copied once, by its consumer, instead of once per slicing step), and each part's few
header lines are read with one regular expression: ~1 ms for the same request. The images have
to be in memory for decoding anyway, so reading the body first costs nothing the streaming parser
saved.

Strict on purpose: anything not well-formed is a `MultipartError` (400), never a guess.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import unquote

# name=value parameters of a header: value a token or a quoted string with backslash escapes
PARAMETER = re.compile(r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')
QUOTED_PAIR = re.compile(r"\\(.)")


class MultipartError(ValueError):
    """A body that is not well-formed multipart/form-data; the message says where."""


class Part(NamedTuple):  # a NamedTuple: 1,000 of them per request are cheap to make
    name: str
    filename: str | None  # set for file parts (`curl -F images=@cat.jpg`), None for plain fields
    content_type: str | None
    data: memoryview  # a slice of the request body; bytes(data) or str(data, 'utf-8') copy it once


def header_parameters(value: str) -> tuple[str, dict[str, str]]:
    """'form-data; name="a"; filename="b.jpg"' -> ('form-data', {'name': 'a', 'filename': 'b.jpg'})"""
    main, _, rest = value.partition(";")
    params = {}
    for key, raw in PARAMETER.findall(";" + rest):
        if raw.startswith('"'):
            raw = QUOTED_PAIR.sub(r"\1", raw[1:-1])
        params[key.lower()] = raw
    return main.strip().lower(), params


def boundary_of(content_type: str) -> bytes:
    """The boundary parameter of a multipart Content-Type header."""
    _, params = header_parameters(content_type)
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= 200:
        raise MultipartError("the Content-Type header has no usable boundary parameter")
    return boundary.encode("latin-1", errors="replace")


def parse_multipart(body: bytes, boundary: bytes, max_files: int, max_fields: int) -> list[Part]:
    """Every part of the body, in order, its data a memoryview into `body` (no copy). Raises
    MultipartError (malformed), or TooManyFiles / TooManyFields past the limits, counted before
    any part is decoded."""
    spans = _part_spans(body, b"\r\n--" + boundary, max_files + max_fields)
    view = memoryview(body)
    heads: dict[bytes, Head] = {}  # the 1,000 `labels` parts of a request share one header block
    parts = [_part(body, view, span, i, heads) for i, span in enumerate(spans)]
    files = sum(1 for part in parts if part.filename is not None)
    if files > max_files:
        raise TooManyFiles(files)
    if len(parts) - files > max_fields:
        raise TooManyFields(len(parts) - files)
    return parts


def _part_spans(body: bytes, delimiter: bytes, max_parts: int) -> list[tuple[int, int]]:
    """(start, end) in `body` of each part between the first delimiter and the closing one.

    The delimiter is CRLF "--" boundary; the first one may open the body without its CRLF. The
    body is searched in place (bytes.find), never split into copies, up to the closing delimiter
    (RFC 2046: the preamble and the epilogue are ignored)."""
    opening = delimiter[2:]  # "--" boundary at the very start of the body
    position = len(opening) if body.startswith(opening) else _after(body, delimiter)
    spans: list[tuple[int, int]] = []
    while position >= 0 and not body.startswith(b"--", position):  # "--" after it: the closing one
        found = body.find(delimiter, position)
        if found < 0:
            position = -1
            break
        spans.append((position, found))
        if len(spans) > max_parts:  # before any part is read: bounds the work
            raise TooManyFields(_count_parts(body, delimiter))
        position = found + len(delimiter)
    if position < 0:
        raise MultipartError("the body ends before the closing boundary (truncated?)")
    return spans


def _after(body: bytes, delimiter: bytes) -> int:
    found = body.find(delimiter)
    return found if found < 0 else found + len(delimiter)


def _count_parts(body: bytes, delimiter: bytes) -> int:
    """All the parts of a body refused for their number (the message says how many)."""
    chunks = (b"\r\n" + body).split(delimiter)  # [preamble, part, ..., "--" + epilogue, ...]
    closing = next((i for i, chunk in enumerate(chunks) if i and chunk.startswith(b"--")), None)
    if closing is None:
        raise MultipartError("the body ends before the closing boundary (truncated?)")
    return closing - 1


class TooManyFiles(MultipartError):
    def __init__(self, count: int) -> None:
        super().__init__(f"{count} file parts")
        self.count = count


class TooManyFields(MultipartError):
    def __init__(self, count: int) -> None:
        super().__init__(f"{count} fields")
        self.count = count


Head = tuple[str, str | None, str | None]  # name, filename, content type


def _part(body: bytes, view: memoryview, span: tuple[int, int], index: int, heads: dict[bytes, Head]) -> Part:
    """body[start:end], one part after a delimiter: [transport padding] CRLF headers CRLF CRLF
    content. Only the header block is copied out of the body (it is a dictionary key)."""
    start, end = span
    line_end = body.find(b"\r\n", start, end)
    if line_end < 0 or body[start:line_end].strip(b" \t"):
        raise MultipartError(f"part {index}: the boundary line is not followed by a line break")
    head_start = line_end + 2
    if body.startswith(b"\r\n", head_start, end):  # no headers at all
        raise MultipartError(f"part {index}: no Content-Disposition header")
    head_end = body.find(b"\r\n\r\n", head_start, end)
    if head_end < 0:
        raise MultipartError(f"part {index}: headers are not followed by a blank line")
    head = body[head_start:head_end]
    known = heads.get(head)
    if known is None:
        known = heads[head] = _head(head, index)
    return Part(known[0], known[1], known[2], view[head_end + 4 : end])


def _head(head: bytes, index: int) -> Head:
    try:
        lines = head.decode("utf-8").split("\r\n")
    except UnicodeDecodeError as error:
        raise MultipartError(f"part {index}: headers are not UTF-8 text") from error
    headers = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name[0] in " \t":  # obsolete line folding is refused too
            raise MultipartError(f"part {index}: malformed header line {line[:60]!r}")
        headers[name.strip().lower()] = value.strip()
    disposition, params = header_parameters(headers.get("content-disposition", ""))
    if disposition != "form-data" or not params.get("name"):
        raise MultipartError(f"part {index}: Content-Disposition must be form-data with a name")
    filename = params.get("filename")
    if filename is None and "filename*" in params:  # RFC 5987 form: utf-8''name
        filename = unquote(params["filename*"].partition("''")[2] or params["filename*"])
    return params["name"], filename, headers.get("content-type")
