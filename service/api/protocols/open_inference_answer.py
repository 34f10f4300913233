"""The Open Inference Protocol v2: inference answers (JSON, or JSON + binary tensor data) and the
server and model metadata documents. Inputs and outputs are described in
service.api.protocols.open_inference."""

from __future__ import annotations

import struct
from typing import Any

from starlette.responses import Response

from service.api.classify import Scored
from service.api.json_response import dumps
from service.api.protocols.open_inference import COSINES, IMAGES, LABELS, OUTPUTS, SCORES

HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ("binary_tensor_data", "parameters")
INPUT_METADATA = [
    {"name": IMAGES, "datatype": "BYTES", "shape": [-1]},
    {"name": LABELS, "datatype": "BYTES", "shape": [-1]},
]
OUTPUT_METADATA = [
    {"name": SCORES, "datatype": "FP32", "shape": [-1, -1]},
    {"name": COSINES, "datatype": "FP32", "shape": [-1, -1]},
    {"name": LABELS, "datatype": "BYTES", "shape": [-1]},
]
assert [item["name"] for item in OUTPUT_METADATA] == list(OUTPUTS)


def model_metadata(ref: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": ref["name"],
        "versions": [ref["version"]],
        "platform": f"clipserve_{ref['method']}",
        "inputs": INPUT_METADATA,
        "outputs": OUTPUT_METADATA,
    }


def infer_answer(scored: Scored, outputs: dict[str, bool], request_id: str | None) -> Response:
    """The inference response: JSON, or (any output as binary) the JSON header and then the
    binary outputs in the order they are listed, with Inference-Header-Content-Length."""
    tensors: list[dict[str, Any]] = []
    binaries: list[bytes] = []
    for name, binary in outputs.items():
        tensor, raw = output_tensor(scored, name)
        if binary:
            tensor["parameters"] = {"binary_data_size": len(raw)}
            binaries.append(raw)
        else:
            tensor["data"] = plain_data(scored, name)
        tensors.append(tensor)
    body: dict[str, Any] = {"model_name": scored.model["name"], "model_version": scored.model["version"]}
    if request_id is not None:
        body["id"] = request_id
    body["outputs"] = tensors
    header = dumps(body, allow_nan=True)  # as json.dumps always wrote /v2 answers
    if not binaries:
        return Response(header, media_type="application/json")
    return Response(
        header + b"".join(binaries),
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )


def output_tensor(scored: Scored, name: str) -> tuple[dict[str, Any], bytes]:
    """The tensor's description and its bytes as binary data (little-endian; BYTES length-prefixed)."""
    if name == LABELS:
        return {"name": name, "datatype": "BYTES", "shape": [len(scored.labels)]}, bytes_tensor(scored.labels)
    matrix = (scored.scores if name == SCORES else scored.cosine).numpy().astype("<f4")  # [N, C]
    return {"name": name, "datatype": "FP32", "shape": list(matrix.shape)}, matrix.tobytes()


def plain_data(scored: Scored, name: str) -> list[Any]:
    if name == LABELS:
        return list(scored.labels)
    matrix = scored.scores if name == SCORES else scored.cosine
    return matrix.reshape(-1).tolist()  # row-major, flattened


def bytes_tensor(items: list[str]) -> bytes:
    encoded = [item.encode("utf-8") for item in items]
    return b"".join(struct.pack("<I", len(item)) + item for item in encoded)
