"""Request parsing of the protocol routes, without a server: Open Inference Protocol tensors (the
binary-data extension against tritonclient's own serialiser), Hugging Face and embeddings bodies."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from service.api.protocols import embeddings, open_inference
from service.api.protocols.embeddings import EmbeddingsInput
from service.api.protocols.hf import HFRequest, hf_input
from service.api.protocols.open_inference import InferInput, flatten, length_prefixed, split_body
from service.api.protocols.open_inference_answer import bytes_tensor
from service.errors import BadInput, Invalid, ServiceError, TooLarge, UrlRefused
from service.settings import Settings

SETTINGS = Settings(max_images=3, max_labels=4, max_label_chars=20)
PNG = b"\x89PNG fake image bytes"


def parse_infer(body: bytes, header_length: str | None, settings: Settings) -> InferInput:
    return asyncio.run(open_inference.parse_infer(body, header_length, settings))


def parse_embeddings(body: bytes, settings: Settings) -> EmbeddingsInput:
    return asyncio.run(embeddings.parse_embeddings(body, settings))


def serialised(items: list[bytes]) -> bytes:
    """tritonclient's own BYTES serialisation (what InferInput sends as binary data)."""
    return bytes(serialize_byte_tensor(np.array(items, dtype=np.object_)).item())


@given(st.lists(st.binary(max_size=40), max_size=6))
def test_length_prefixed_reads_what_tritonclient_writes(items: list[bytes]) -> None:
    blob = serialised(items) if items else b""
    assert length_prefixed(memoryview(blob), "x") == items


@given(st.lists(st.text(max_size=20), max_size=6))
def test_bytes_tensor_is_what_tritonclient_reads(labels: list[str]) -> None:
    decoded = deserialize_bytes_tensor(bytes_tensor(labels)) if labels else []
    assert [item.decode("utf-8") for item in decoded] == labels


@pytest.mark.parametrize(
    ("blob", "words"), [(b"\x05\x00\x00\x00abc", "claims 5 bytes"), (b"\x01\x00", "4-byte length")]
)
def test_length_prefixed_refuses_truncated_data(blob: bytes, words: str) -> None:
    with pytest.raises(BadInput, match=words):
        length_prefixed(memoryview(blob), "images")


def test_flatten_is_row_major_and_needs_no_recursion() -> None:
    assert flatten([["a", "b"], ["c", ["d"]], "e"]) == ["a", "b", "c", "d", "e"]
    deep: list[Any] = ["x"]
    for _ in range(5000):
        deep = [deep]
    assert flatten(deep) == ["x"]


@pytest.mark.parametrize("header", ["-1", "abc", "99999", "1e3"])
def test_split_body_refuses_bad_header_lengths(header: str) -> None:
    with pytest.raises(BadInput, match="Inference-Header-Content-Length"):
        split_body(b"{}", header)


def binary_request(inputs: list[tuple[str, list[bytes]]], **extra: Any) -> tuple[bytes, str]:
    """A body as tritonclient builds it: JSON header, then each input's serialised bytes."""
    sections = [serialised(items) for _, items in inputs]
    header = {
        "inputs": [
            {
                "name": name,
                "shape": [len(items)],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(s)},
            }
            for (name, items), s in zip(inputs, sections, strict=True)
        ],
        **extra,
    }
    encoded = json.dumps(header).encode()
    return encoded + b"".join(sections), str(len(encoded))


def test_binary_inputs_are_read_in_order_and_outputs_default_to_all() -> None:
    body, length = binary_request([("labels", [b"cat", "château".encode()]), ("images", [PNG, PNG + b"2"])])
    parsed = parse_infer(body, length, SETTINGS)
    assert parsed.images == [PNG, PNG + b"2"] and parsed.labels == ["cat", "château"]
    assert parsed.outputs == {"scores": False, "cosines": False, "labels": False}
    binary_out = parse_infer(
        *binary_request([("images", [PNG])], parameters={"binary_data_output": True}), SETTINGS
    )
    assert (
        binary_out.outputs == {"scores": True, "cosines": True, "labels": True} and binary_out.labels is None
    )


def test_json_inputs_take_base64_images_and_nested_data() -> None:
    data = [[base64.b64encode(PNG).decode()], ["data:image/png;base64," + base64.b64encode(PNG).decode()]]
    body = {
        "id": "r1",
        "inputs": [{"name": "images", "shape": [2, 1], "datatype": "BYTES", "data": data}],
        "outputs": [{"name": "labels", "parameters": {"binary_data": True}}, {"name": "scores"}],
    }
    parsed = parse_infer(json.dumps(body).encode(), None, SETTINGS)
    assert parsed.images == [PNG, PNG] and parsed.request_id == "r1"
    assert parsed.outputs == {"labels": True, "scores": False}


def infer_error(inputs: list[dict[str, Any]], header: str | None = None, tail: bytes = b"") -> ServiceError:
    body = json.dumps({"inputs": inputs}).encode()
    with pytest.raises(ServiceError) as error:
        parse_infer(
            body + tail, header if header is not None else (str(len(body)) if tail else None), SETTINGS
        )
    return error.value


def test_infer_refusals_name_the_problem() -> None:
    image = {"name": "images", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(PNG).decode()]}
    five = {"name": "labels", "shape": [5], "datatype": "BYTES", "data": list("abcde")}
    cases: list[tuple[ServiceError, type[ServiceError], str]] = [
        (infer_error([{**image, "shape": [4], "data": ["x"] * 4}]), TooLarge, "max_images=3"),
        (infer_error([image, five]), Invalid, "max_labels=4"),
        (infer_error([image, {**five, "shape": [2], "data": [1, 2]}]), Invalid, "not a string"),
        (infer_error([image, {**five, "shape": [2], "data": ["a", "a"]}]), Invalid, "unique"),
        (infer_error([image, image]), Invalid, "given twice"),
        (infer_error([{**image, "shape": [-1]}]), Invalid, "negative"),
        (infer_error([{**image, "data": None}]), Invalid, "neither data"),
        (infer_error([{**image, "shape": [0], "data": []}]), Invalid, "no images"),
        (infer_error([image], tail=b"junk"), BadInput, "belong to no input"),
        (
            infer_error([{**image, "data": None, "parameters": {"binary_data_size": 99}}], tail=b"ab"),
            BadInput,
            "does not fit",
        ),
        (infer_error([{**image, "data": ["http://example.com/a.png"]}]), UrlRefused, "image URLs are off"),
        (infer_error([{**image, "parameters": {"binary_data_size": 2}}], tail=b"ab"), Invalid, "both data"),
    ]
    for error, kind, words in cases:
        assert isinstance(error, kind) and words in error.message, (error, kind, words)


def test_hf_input_shapes() -> None:
    payload = HFRequest.model_validate(
        {
            "inputs": base64.b64encode(PNG).decode(),
            "parameters": {"candidate_labels": "cat, dog", "hypothesis_template": "a {}"},
        }
    )
    parsed = hf_input(payload, SETTINGS, "pets")
    assert parsed.labels == ["cat", "dog"] and parsed.templates == ("a {}",) and parsed.model == "pets"
    assert parsed.top_k > SETTINGS.max_labels  # every label is answered
    for parameters, words in [
        ({"candidate_labels": ["a"] * 2}, "unique"),
        ({"candidate_labels": ["x" * 21]}, "max_label_chars"),
        ({"hypothesis_template": "no placeholder"}, "hypothesis_template"),
        ({"top_k": 0}, "top_k"),
    ]:
        with pytest.raises(Invalid, match=words):
            hf_input(HFRequest.model_validate({"inputs": "", "parameters": parameters}), SETTINGS, None)


def test_embeddings_bodies() -> None:
    texts = parse_embeddings(json.dumps({"model": "m", "input": "a cat"}).encode(), SETTINGS)
    assert texts.texts == ["a cat"] and texts.prompt == "model" and texts.encoding == "float"
    images = parse_embeddings(
        json.dumps({"model": "", "input": [base64.b64encode(PNG).decode()], "modality": "image"}).encode(),
        SETTINGS,
    )
    assert images.images == [PNG] and images.texts is None and images.model is None
    for body, kind, words in [
        ({"model": "m", "input": []}, Invalid, "at least one"),
        ({"model": "m", "input": ["a"] * 5}, Invalid, "max_labels=4"),
        ({"model": "m", "input": ["  "]}, Invalid, "empty"),
        ({"model": "m", "input": [1, 2]}, Invalid, "input"),
        ({"model": "m", "input": ["x"] * 4, "modality": "image"}, TooLarge, "max_images=3"),
        ({"model": "m", "input": "x", "modality": "image", "prompt": "none"}, Invalid, "prompt"),
        ({"model": "m", "input": "x", "encoding_format": "int8"}, Invalid, "encoding_format"),
        ({"input": "x"}, Invalid, "model"),
    ]:
        with pytest.raises(kind, match=words):
            parse_embeddings(json.dumps(body).encode(), SETTINGS)
    with pytest.raises(BadInput, match="JSON"):
        parse_embeddings(b"{", SETTINGS)


def test_struct_layout_is_little_endian() -> None:
    assert bytes_tensor(["ab"]) == struct.pack("<I", 2) + b"ab"
