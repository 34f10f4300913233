"""The Open Inference Protocol v2 (KServe, Triton) for CLIP classification: request parsing.

Every model takes two BYTES tensors and gives three outputs:
- input `images`: BYTES [N] (any shape with N elements): each element an encoded image, as raw
  bytes in the binary-data extension, or in JSON `data` as base64, a data: URI, or where
  image_url_allow allows it a URL;
- input `labels` (optional): BYTES [C], UTF-8 label strings; absent: the model's own classes;
- outputs `scores` FP32 [N, C] (softmax at CLIP's temperature), `cosines` FP32 [N, C], and
  `labels` BYTES [C] (the labels the columns stand for).
Triton's binary tensor data extension is supported both ways (what tritonclient uses by
default): the `Inference-Header-Content-Length` header gives the JSON header's size, each binary
input says its `binary_data_size`, and requested outputs with `binary_data: true` (or the request
parameter `binary_data_output`) come back as raw bytes after the JSON header. Request parameters:
`binary_data_output` (bool) and `templates` (zeroshot: one template with '{}' or a set name).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr

from models.zeroshot import resolve_templates
from service.api.parse import _check_labels, load_json
from service.api.protocols.common import images_from_text
from service.errors import BadInput, Invalid, TooLarge
from service.settings import Settings

IMAGES, LABELS, SCORES, COSINES = "images", "labels", "scores", "cosines"
OUTPUTS = (SCORES, COSINES, LABELS)
REQUEST_PARAMETERS = ("binary_data_output", "templates")
Parameter = StrictBool | StrictInt | StrictFloat | StrictStr


class InputTensor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[StrictInt]
    datatype: str
    parameters: dict[str, Parameter] | None = None
    data: list[Any] | None = None


class OutputRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    parameters: dict[str, Parameter] | None = None


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    parameters: dict[str, Parameter] | None = None
    inputs: list[InputTensor]
    outputs: list[OutputRequest] | None = None


@dataclass
class InferInput:
    images: list[bytes]
    labels: list[str] | None
    templates: tuple[str, ...] | None
    outputs: dict[str, bool]  # requested output -> as binary data
    request_id: str | None


async def parse_infer(body: bytes, header_length: str | None, settings: Settings) -> InferInput:
    header, binary = split_body(body, header_length)
    request = load_json(header, InferRequest)
    parameters = request.parameters or {}
    unknown = sorted(set(parameters) - set(REQUEST_PARAMETERS))
    if unknown:
        raise Invalid(f"unknown request parameters {unknown}; this server reads {list(REQUEST_PARAMETERS)}")
    tensors = read_inputs(request.inputs, binary, settings)
    if IMAGES not in tensors:
        raise Invalid(f"input {IMAGES!r} (BYTES, one encoded image per element) is required")
    if not tensors[IMAGES]:
        raise Invalid(f"input {IMAGES!r} holds no images")
    labels = None
    if LABELS in tensors:
        labels = [_text(blob, LABELS, i) for i, (blob, _) in enumerate(tensors[LABELS])]
        _check_labels(labels, settings)
    templates, outputs = _templates(parameters), requested_outputs(request)  # checked before any fetch
    images = await image_elements(tensors[IMAGES], settings)
    return InferInput(images, labels, templates, outputs, request.id)


async def image_elements(elements: list[tuple[bytes, bool]], settings: Settings) -> list[bytes]:
    """Binary elements are the encoded images; JSON ones are text: base64, a data: URI, or a URL."""
    texts = {i: _text(raw, IMAGES, i) for i, (raw, binary) in enumerate(elements) if not binary}
    images = [raw for raw, _ in elements]
    for index, data in zip(texts, await images_from_text(list(texts.values()), settings), strict=True):
        images[index] = data
    return images


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON header, and the binary tensor data after it (binary-data extension)."""
    if header_length is None:
        return body, memoryview(b"")
    if not header_length.isdigit() or int(header_length) > len(body):
        raise BadInput(
            f"Inference-Header-Content-Length {header_length[:20]!r} must be a byte count within the "
            f"body ({len(body)} bytes)"
        )
    size = int(header_length)
    return body[:size], memoryview(body)[size:]


def read_inputs(
    inputs: list[InputTensor], binary: memoryview, settings: Settings
) -> dict[str, list[tuple[bytes, bool]]]:
    """name -> its elements, each (bytes, came as binary data); binary sections in input order."""
    tensors: dict[str, list[tuple[bytes, bool]]] = {}
    offset = 0
    for tensor in inputs:
        if tensor.name in tensors:
            raise Invalid(f"input {tensor.name!r} is given twice")
        count = element_count(tensor, settings)
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            tensors[tensor.name] = [(item, False) for item in json_elements(tensor, count)]
            continue
        if tensor.data is not None:
            raise Invalid(f"input {tensor.name!r} has both data and binary_data_size; give one")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
            raise BadInput(
                f"input {tensor.name!r}: binary_data_size {size!r} does not fit the "
                f"{len(binary) - offset} bytes of binary data left"
            )
        items = length_prefixed(binary[offset : offset + size], tensor.name)
        if len(items) != count:
            raise BadInput(
                f"input {tensor.name!r}: shape {tensor.shape} needs {count} elements, not {len(items)}"
            )
        tensors[tensor.name] = [(item, True) for item in items]
        offset += size
    if offset != len(binary):
        raise BadInput(f"{len(binary) - offset} bytes of binary data belong to no input")
    return tensors


def element_count(tensor: InputTensor, settings: Settings) -> int:
    """The elements the tensor's shape holds, after checking its name, datatype and limits."""
    limits = {IMAGES: (settings.max_images, "max_images"), LABELS: (settings.max_labels, "max_labels")}
    if tensor.name not in limits:
        raise Invalid(f"unknown input {tensor.name[:80]!r}; the inputs are {IMAGES!r} and {LABELS!r}")
    if tensor.datatype != "BYTES":
        raise Invalid(f"input {tensor.name!r} must have datatype BYTES, not {tensor.datatype[:20]!r}")
    if any(dim < 0 for dim in tensor.shape):
        raise Invalid(f"input {tensor.name!r}: shape {tensor.shape} has a negative dimension")
    count = math.prod(tensor.shape)
    limit, setting = limits[tensor.name]
    if count > limit:
        error = TooLarge if tensor.name == IMAGES else Invalid  # as on /classify: 413 images, 422 labels
        raise error(f"input {tensor.name!r} holds {count} elements; {setting}={limit}")
    return count


def json_elements(tensor: InputTensor, count: int) -> list[bytes]:
    """The `data` of a BYTES input given in JSON: strings, flat or nested by the shape."""
    if tensor.data is None:
        raise Invalid(f"input {tensor.name!r} has neither data nor parameters.binary_data_size")
    items = flatten(tensor.data)
    if len(items) != count:
        raise Invalid(f"input {tensor.name!r}: shape {tensor.shape} needs {count} elements, got {len(items)}")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise Invalid(f"input {tensor.name!r} element {i} is a {type(item).__name__}, not a string")
    return [item.encode("utf-8") for item in items]


def flatten(data: list[Any]) -> list[Any]:
    """Nested lists in row-major order -> one flat list (iteratively: no recursion limit)."""
    flat: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        item = next(stack[-1], StopIteration)
        if item is StopIteration:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            flat.append(item)
    return flat


def length_prefixed(blob: memoryview, name: str) -> list[bytes]:
    """Triton's serialised BYTES tensor: each element a little-endian uint32 length, then the bytes."""
    items, offset = [], 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise BadInput(f"input {name!r}: binary data ends inside an element's 4-byte length")
        (size,) = struct.unpack_from("<I", blob, offset)
        offset += 4
        if offset + size > len(blob):
            raise BadInput(f"input {name!r}: an element claims {size} bytes; {len(blob) - offset} are left")
        items.append(bytes(blob[offset : offset + size]))
        offset += size
    return items


def _text(blob: bytes, name: str, index: int) -> str:
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadInput(f"input {name!r} element {index} is not UTF-8 text") from error


def _templates(parameters: dict[str, Any]) -> tuple[str, ...] | None:
    value = parameters.get("templates")
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid("parameter 'templates' must be a string: one template with '{}' or a set name")
    try:
        return resolve_templates(value)
    except ValueError as error:
        raise Invalid(str(error)) from error


def requested_outputs(request: InferRequest) -> dict[str, bool]:
    """name -> binary; every output when none are named (binary if binary_data_output)."""
    default = (request.parameters or {}).get("binary_data_output", False)
    if not isinstance(default, bool):
        raise Invalid("parameter 'binary_data_output' must be true or false")
    if request.outputs is None:
        return dict.fromkeys(OUTPUTS, default)
    outputs: dict[str, bool] = {}
    for output in request.outputs:
        if output.name not in OUTPUTS:
            raise Invalid(f"unknown output {output.name[:80]!r}; the outputs are {list(OUTPUTS)}")
        parameters = output.parameters or {}
        if "classification" in parameters:
            raise Invalid("the classification extension is not supported; read the scores output")
        binary = parameters.get("binary_data", default)
        if not isinstance(binary, bool):
            raise Invalid(f"output {output.name!r}: binary_data must be true or false")
        outputs[output.name] = binary
    return outputs
