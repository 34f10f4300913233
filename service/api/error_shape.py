"""The JSON body of an error answer, by protocol.

Everywhere: {"error": {"code", "type", "message"}} (an OpenAI client reads `error.message` from it
too). Under /v2 the Open Inference Protocol prescribes {"error": "<message>"}, which is what
KServe and Triton clients read (tritonclient raises InferenceServerException with that message).
"""

from __future__ import annotations

from typing import Any

OPEN_INFERENCE_PREFIX = "/v2"


def speaks_open_inference(path: str) -> bool:
    return path == OPEN_INFERENCE_PREFIX or path.startswith(OPEN_INFERENCE_PREFIX + "/")


def error_body(path: str, status: int, kind: str, message: str) -> dict[str, Any]:
    if speaks_open_inference(path):
        return {"error": message}
    return {"error": {"code": status, "type": kind, "message": message}}
