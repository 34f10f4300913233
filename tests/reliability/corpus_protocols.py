"""The hostile-input corpus for the protocol routes: Hugging Face (POST /, /models/{name}),
/v1/embeddings and /v2 infer. Same form as tests/reliability/corpus.py: name -> (httpx kwargs,
expected status, words the message must contain); kwargs carry their `url`."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

from tests.reliability.corpus import (
    LABELS,
    MAX_BODY_BYTES,
    MAX_IMAGES,
    MAX_LABELS,
    encoded,
    noise,
    png_claiming,
)

Case = tuple[dict[str, Any], int, str]
VALID = "accepted"


def b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode()


def hf(inputs: Any, url: str = "/", **parameters: Any) -> dict[str, Any]:
    return {"url": url, "json": {"inputs": inputs, "parameters": {"candidate_labels": LABELS, **parameters}}}


def hf_cases() -> dict[str, Case]:
    png, jpeg = encoded(noise(), "PNG"), encoded(noise(), "JPEG")
    raw = {"content": png, "headers": {"content-type": "image/png"}}
    return {
        "hf: valid": (hf(b64(png)), 200, VALID),
        "hf: raw image, checkpoint classes": ({"url": "/models/pets", **raw}, 200, VALID),
        "hf: raw image, zeroshot has no classes": ({"url": "/", **raw}, 422, "pass labels"),
        "hf: truncated jpeg": (hf(b64(jpeg[: len(jpeg) // 2])), 400, "truncated"),
        "hf: bomb header": (hf(b64(png_claiming(100_000, 100_000))), 413, "max_image_pixels"),
        "hf: text as image": (hf(b64(b"hello")), 415, "not an image"),
        "hf: invalid base64": (hf("not base64!!"), 400, "base64"),
        "hf: url while urls are off input": (hf("http://127.0.0.1:9/x.png"), 403, "image URLs are off"),
        "hf: inputs a list": (hf([b64(png)]), 422, "inputs"),
        "hf: 5000 labels": (hf(b64(png), candidate_labels=[f"c{i}" for i in range(5000)]), 422, "max_labels"),
        "hf: duplicate labels": (hf(b64(png), candidate_labels=["a", "a"]), 422, "unique"),
        "hf: 100 KB label": (hf(b64(png), candidate_labels=["x" * 100_000]), 422, "max_label_chars"),
        "hf: labels not strings": (hf(b64(png), candidate_labels=[1, 2]), 422, "candidate_labels"),
        "hf: template without placeholder": (hf(b64(png), hypothesis_template="nothing"), 422, "'{}'"),
        "hf: template on a trained model": (
            hf(b64(png), "/models/pets", hypothesis_template="a {}"),
            422,
            "templates",
        ),
        "hf: unknown model": (hf(b64(png), "/models/nope"), 404, "unknown model"),
        "hf: unknown parameter": (hf(b64(png), function_to_apply="sigmoid"), 422, "function_to_apply"),
        "hf: top_k 0": (hf(b64(png), top_k=0), 422, "top_k"),
        "hf: malformed json": (
            {"url": "/", "content": b'{"inputs": ', "headers": {"content-type": "application/json"}},
            400,
            "JSON",
        ),
        "hf: text/plain": (
            {"url": "/", "content": png, "headers": {"content-type": "text/plain"}},
            415,
            "content type",
        ),
        "hf: oversized body": (
            {"url": "/", **{**raw, "content": b"\0" * (MAX_BODY_BYTES + 1)}},
            413,
            "max_body_bytes",
        ),
    }


def embed(inputs: Any, **fields: Any) -> dict[str, Any]:
    return {"url": "/v1/embeddings", "json": {"model": "pets", "input": inputs, **fields}}


def embedding_cases() -> dict[str, Case]:
    png, jpeg = encoded(noise(), "PNG"), encoded(noise(), "JPEG")
    return {
        "embeddings: texts": (embed(["cat", "a red car"]), 200, VALID),
        "embeddings: images": (embed([b64(png), b64(jpeg)], modality="image"), 200, VALID),
        "embeddings: empty input list": (embed([]), 422, "at least one"),
        "embeddings: 5000 texts": (embed([f"t{i}" for i in range(5000)]), 422, "max_labels"),
        "embeddings: empty text": (embed(["cat", " "]), 422, "empty"),
        "embeddings: 100 KB text": (embed(["x" * 100_000]), 422, "max_label_chars"),
        "embeddings: text over the context": (embed(["🐈" * 40]), 422, "tokens"),
        "embeddings: token arrays": (embed([[1, 2, 3]]), 422, "input"),
        "embeddings: unknown model": (
            {"url": "/v1/embeddings", "json": {"model": "nope", "input": "x"}},
            404,
            "unknown model",
        ),
        "embeddings: wrong dimensions": (embed("cat", dimensions=7), 422, "dimensions=7"),
        "embeddings: unknown encoding": (embed("cat", encoding_format="int8"), 422, "encoding_format"),
        "embeddings: unknown modality": (embed("cat", modality="audio"), 422, "modality"),
        "embeddings: unknown field": (embed("cat", input_type="query"), 422, "input_type"),
        "embeddings: invalid base64 image": (embed(["not base64!!"], modality="image"), 400, "base64"),
        "embeddings: url while urls are off image": (
            embed(["https://127.0.0.1:9/x.png"], modality="image"),
            403,
            "image URLs are off",
        ),
        "embeddings: bomb image": (
            embed([b64(png_claiming(100_000, 100_000))], modality="image"),
            413,
            "max_image_pixels",
        ),
        "embeddings: truncated image": (
            embed([b64(jpeg[: len(jpeg) // 2])], modality="image"),
            400,
            "truncated",
        ),
        "embeddings: too many images": (
            embed([b64(png)] * (MAX_IMAGES + 1), modality="image"),
            413,
            "max_images",
        ),
        "embeddings: text/plain": (
            {"url": "/v1/embeddings", "content": b"{}", "headers": {"content-type": "text/plain"}},
            415,
            "application/json",
        ),
        "embeddings: oversized json": (
            {
                "url": "/v1/embeddings",
                "content": b'{"input": ["' + b"A" * MAX_BODY_BYTES + b'"]}',
                "headers": {"content-type": "application/json"},
            },
            413,
            "max_body_bytes",
        ),
    }


def tensor(name: str, items: list[Any], datatype: str = "BYTES", **fields: Any) -> dict[str, Any]:
    return {"name": name, "shape": [len(items)], "datatype": datatype, "data": items, **fields}


def infer(
    inputs: list[dict[str, Any]], url: str = "/v2/models/zeroshot/infer", **fields: Any
) -> dict[str, Any]:
    return {"url": url, "json": {"inputs": inputs, **fields}}


def binary_infer(
    sections: list[tuple[str, bytes, int]], tail: bytes = b"", header: str | None = None
) -> dict[str, Any]:
    """A binary-data request: (input name, its serialised bytes, element count) per input."""
    inputs = [
        {"name": name, "shape": [count], "datatype": "BYTES", "parameters": {"binary_data_size": len(blob)}}
        for name, blob, count in sections
    ]
    head = json.dumps({"inputs": inputs}).encode()
    body = head + b"".join(blob for _, blob, _ in sections) + tail
    length = header if header is not None else str(len(head))
    return {
        "url": "/v2/models/zeroshot/infer",
        "content": body,
        "headers": {"inference-header-content-length": length},
    }


def serialised(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def infer_cases() -> dict[str, Case]:
    png, jpeg = encoded(noise(), "PNG"), encoded(noise(), "JPEG")
    images, labels = tensor("images", [b64(png)]), tensor("labels", LABELS)
    good_binary = [("images", serialised([png]), 1), ("labels", serialised([b"cat", b"dog"]), 2)]
    return {
        "v2: json tensors": (infer([images, labels]), 200, VALID),
        "v2: binary tensors": (binary_infer(good_binary), 200, VALID),
        "v2: checkpoint classes": (infer([images], "/v2/models/pets/versions/1/infer"), 200, VALID),
        "v2: header length past the body": (
            binary_infer(good_binary, header="999999"),
            400,
            "Inference-Header-Content-Length",
        ),
        "v2: header length not a number": (
            binary_infer(good_binary, header="12a"),
            400,
            "Inference-Header-Content-Length",
        ),
        "v2: trailing binary bytes": (binary_infer(good_binary, tail=b"xx"), 400, "belong to no input"),
        "v2: element length past its section": (
            binary_infer([("images", struct.pack("<I", 10_000) + png, 1)]),
            400,
            "claims 10000 bytes",
        ),
        "v2: element count off the shape": (
            binary_infer([("images", serialised([png, png]), 1)]),
            400,
            "needs 1",
        ),
        "v2: label not utf-8": (
            binary_infer([("images", serialised([png]), 1), ("labels", serialised([b"\xff\xfe"]), 1)]),
            400,
            "UTF-8",
        ),
        "v2: unknown input": (infer([images, tensor("pixels", ["x"])]), 422, "unknown input"),
        "v2: fp32 labels": (infer([images, tensor("labels", [1.0], "FP32")]), 422, "BYTES"),
        "v2: shape off the data": (infer([images, {**labels, "shape": [5]}]), 422, "needs 5"),
        "v2: too many images": (
            infer([tensor("images", [b64(png)] * (MAX_IMAGES + 1)), labels]),
            413,
            "max_images",
        ),
        "v2: too many labels": (
            infer([images, tensor("labels", [f"l{i}" for i in range(MAX_LABELS + 1)])]),
            422,
            "max_labels",
        ),
        "v2: shape product huge": (infer([{**images, "shape": [2**40, 2**40]}]), 413, "max_images"),
        "v2: no images": (infer([labels]), 422, "'images'"),
        "v2: bomb image": (
            infer([tensor("images", [b64(png_claiming(100_000, 100_000))]), labels]),
            413,
            "max_image_pixels",
        ),
        "v2: truncated image": (
            infer([tensor("images", [b64(jpeg[: len(jpeg) // 2])]), labels]),
            400,
            "truncated",
        ),
        "v2: raw bytes not an image": (
            binary_infer([("images", serialised([b"text"]), 1), ("labels", serialised([b"cat"]), 1)]),
            415,
            "not an image",
        ),
        "v2: url while urls are off": (
            infer([tensor("images", ["http://127.0.0.1:9/x.png"]), labels]),
            403,
            "image URLs are off",
        ),
        "v2: unknown model": (infer([images, labels], "/v2/models/nope/infer"), 404, "unknown model"),
        "v2: version not served": (
            infer([images], "/v2/models/pets/versions/9/infer"),
            404,
            "serves version 1",
        ),
        "v2: malformed json": ({"url": "/v2/models/zeroshot/infer", "content": b"{"}, 400, "JSON"),
        "v2: unknown request parameter": (
            infer([images, labels], parameters={"priority": 1}),
            422,
            "priority",
        ),
        "v2: classification extension": (
            infer([images, labels], outputs=[{"name": "scores", "parameters": {"classification": 1}}]),
            422,
            "classification",
        ),
        "v2: oversized body": (
            {"url": "/v2/models/zeroshot/infer", "content": b"\0" * (MAX_BODY_BYTES + 1)},
            413,
            "max_body_bytes",
        ),
    }


def protocol_cases() -> dict[str, Case]:
    return {**hf_cases(), **embedding_cases(), **infer_cases()}
