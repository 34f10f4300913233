"""service/api/multipart.py: the same parts as starlette's parser (python-multipart) on bodies a real
client encodes, and strict refusals of everything that is not well-formed."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartParser

from service.api.multipart import (
    MultipartError,
    Part,
    TooManyFields,
    TooManyFiles,
    boundary_of,
    header_parameters,
    parse_multipart,
)

BOUNDARY = b"b0undary"
names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)
# field values may contain CR, LF, dashes and the boundary's letters: the delimiter is what counts
values = st.text(st.sampled_from(list("ab-\r\n b0undary\u00e9\U0001f408")), max_size=40)
contents = st.binary(max_size=200) | st.sampled_from([b"--b0undary", b"\r\n--b0undar", b"\r\n\r\n"])


def encoded(files: list[tuple[str, str, bytes]], fields: list[tuple[str, str]]) -> tuple[bytes, str]:
    """Body and Content-Type as httpx (a real client) writes them."""
    request = httpx.Request(
        "POST",
        "http://x/",
        files=[(name, (filename, data, "image/png")) for name, filename, data in files],
        data={name: [v for n, v in fields if n == name] for name, _ in fields},
    )
    return request.read(), request.headers["content-type"]


def starlette_parts(body: bytes, content_type: str) -> list[tuple[str, str | None, bytes]]:
    async def stream():  # type: ignore[no-untyped-def]
        yield body

    async def parse() -> list[tuple[str, str | None, bytes]]:
        form = await MultiPartParser(Headers({"content-type": content_type}), stream()).parse()
        out = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                out.append((name, value.filename, await value.read()))
            else:
                out.append((name, None, value.encode()))
        return out

    return asyncio.run(parse())


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    files=st.lists(st.tuples(names, names, contents), min_size=1, max_size=3),  # else not multipart
    fields=st.lists(st.tuples(names, values), max_size=4),
)
def test_parts_equal_starlettes_on_bodies_a_real_client_writes(
    files: list[tuple[str, str, bytes]], fields: list[tuple[str, str]]
) -> None:
    body, content_type = encoded(files, fields)
    ours = parse_multipart(body, boundary_of(content_type), max_files=10, max_fields=10)
    theirs = starlette_parts(body, content_type)
    # starlette groups fields by name (multi_items keeps insertion order per key): compare as multisets
    key = repr  # filenames are str or None: sort by a total order
    assert sorted(((p.name, p.filename, bytes(p.data)) for p in ours), key=key) == sorted(theirs, key=key)


def body(*parts: bytes, preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    return (
        preamble
        + b"".join(b"--" + BOUNDARY + b"\r\n" + part + b"\r\n" for part in parts)
        + (b"--" + BOUNDARY + b"--" + epilogue)
    )


FIELD = b'Content-Disposition: form-data; name="labels"\r\n\r\ncat'
FILE = (
    b'Content-Disposition: form-data; name="images"; filename="a.png"\r\n'
    b"Content-Type: image/png\r\n\r\n\x89PNG"
)


def test_fields_files_preamble_epilogue_and_transport_padding() -> None:
    padded = body(FIELD, FILE, preamble=b"ignored preamble\r\n", epilogue=b"\r\nignored epilogue")
    padded = padded.replace(b"--" + BOUNDARY + b"\r\n", b"--" + BOUNDARY + b"  \t\r\n", 1)
    assert parse_multipart(padded, BOUNDARY, 1, 1) == [
        Part("labels", None, None, b"cat"),
        Part("images", "a.png", "image/png", b"\x89PNG"),
    ]


def test_header_parameters_quoted_escaped_and_rfc5987_filenames() -> None:
    assert header_parameters('form-data; name="a \\"b\\""; filename=x.jpg') == (
        "form-data",
        {"name": 'a "b"', "filename": "x.jpg"},
    )
    star = b"Content-Disposition: form-data; name=\"images\"; filename*=utf-8''chat%C3%A9.png\r\n\r\nx"
    assert parse_multipart(body(star), BOUNDARY, 1, 0)[0].filename == "chaté.png"
    assert boundary_of('multipart/form-data; boundary="quoted:b"') == b"quoted:b"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"no delimiter at all", "closing boundary"),
        (body(FIELD)[: -len(b"--" + BOUNDARY + b"--")], "closing boundary"),  # truncated
        (body(b"Content-Disposition: form-data\r\n\r\nx"), "with a name"),
        (body(b'Content-Disposition: attachment; name="a"\r\n\r\nx'), "form-data"),
        (body(b"\r\nno headers"), "no Content-Disposition"),
        (body(b'Content-Disposition: form-data; name="a"\r\n folded\r\n\r\nx'), "malformed header"),
        (body(b"no colon here\r\n\r\nx"), "malformed header"),
        (body(b'Content-Disposition: form-data; name="a"'), "blank line"),
        (b"--" + BOUNDARY + b"garbage\r\n" + FIELD + b"\r\n--" + BOUNDARY + b"--", "line break"),
        (body(b'Content-Disposition: form-data; name="\xff"\r\n\r\nx'), "UTF-8"),
    ],
)
def test_malformed_bodies_are_refused_with_a_reason(raw: bytes, message: str) -> None:
    with pytest.raises(MultipartError, match=message):
        parse_multipart(raw, BOUNDARY, 5, 5)


def test_limits_count_files_and_fields_and_bound_the_work_before_parsing() -> None:
    with pytest.raises(TooManyFiles):
        parse_multipart(body(FILE, FILE, FIELD), BOUNDARY, max_files=1, max_fields=5)
    with pytest.raises(TooManyFields):
        parse_multipart(body(FIELD, FIELD, FILE), BOUNDARY, max_files=5, max_fields=1)
    # 100,000 malformed parts: refused by count before any of them is read
    with pytest.raises(TooManyFields):
        parse_multipart(body(*[b"garbage"] * 100_000), BOUNDARY, max_files=10, max_fields=10)
    with pytest.raises(MultipartError, match="boundary"):
        boundary_of("multipart/form-data")


def split_reference(body: bytes, boundary: bytes, max_parts: int) -> list[bytes] | str:
    """The parser before #16 cut the body with bytes.split: its parts' raw chunks, or the error."""
    chunks = (b"\r\n" + body).split(b"\r\n--" + boundary)
    closing = next((i for i, chunk in enumerate(chunks) if i and chunk.startswith(b"--")), None)
    if closing is None:
        return "closing boundary"
    if closing - 1 > max_parts:
        return f"{closing - 1} fields"
    return [chunk.partition(b"\r\n\r\n")[2] for chunk in chunks[1:closing]]


pieces = st.sampled_from(
    [b"--b0undary", b"\r\n--b0undary", b"\r\n--b0undary--", b"--", b"\r\n", b"\r\n\r\n", b" \t", b"x", FIELD]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(pieces | st.binary(max_size=6), max_size=12))
def test_the_in_place_search_cuts_where_split_did(chunks: list[bytes]) -> None:
    body = b"".join(chunks)
    expected = split_reference(body, BOUNDARY, max_parts=6)
    try:
        parts = parse_multipart(body, BOUNDARY, max_files=3, max_fields=3)
    except (TooManyFields, TooManyFiles) as error:
        assert isinstance(expected, list) or str(error) == expected, (error, expected)
        return
    except MultipartError as error:
        assert (
            expected == "closing boundary" if "closing boundary" in str(error) else isinstance(expected, list)
        )
        return
    assert isinstance(expected, list) and [bytes(part.data) for part in parts] == expected


def test_part_data_is_a_view_of_the_body_not_a_copy() -> None:
    raw = body(FIELD, FILE)
    labels, image = parse_multipart(raw, BOUNDARY, 1, 1)
    assert isinstance(image.data, memoryview) and image.data.obj is raw
    assert bytes(image.data) == b"\x89PNG" and str(labels.data, "utf-8") == "cat"


def test_a_refused_count_names_every_part() -> None:
    with pytest.raises(TooManyFields, match=r"^1000 fields$"):
        parse_multipart(body(*[FIELD] * 1000), BOUNDARY, max_files=1, max_fields=1)
