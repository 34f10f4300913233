"""Image-encoder backends for the shared lane: torch (bf16 on CUDA, fp32 on CPU) or ONNX Runtime.

An encoder maps normalised pixels on the service device, [B, 3, S, S] float32, to normalised
image features [B, D] float32 on the same device.
"""

from __future__ import annotations

import logging
from typing import Protocol

import torch

from models.backbone import Backbone

log = logging.getLogger("clipserve")


class ImageEncoder(Protocol):
    name: str

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor: ...


def resolve_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={setting!r} but CUDA is not available; use device=cpu or auto")
    return device


def resolve_decode_device(setting: str, service_device: torch.device) -> torch.device:
    """Where JPEGs are decoded: the service's GPU (nvJPEG) or the CPU (Pillow)."""
    if setting == "cpu" or (setting == "auto" and service_device.type != "cuda"):
        return torch.device("cpu")
    if service_device.type != "cuda":
        raise RuntimeError(
            f"decode_device={setting!r} needs the service on CUDA, but device is {service_device}; "
            "use decode_device=auto or cpu"
        )
    return service_device


def resolve_precision(setting: str, device: torch.device) -> str:
    if setting != "auto":
        return setting
    return "bf16" if device.type == "cuda" else "fp32"


class TorchImageEncoder:
    name = "torch"

    def __init__(self, backbone: Backbone) -> None:
        self.backbone = backbone

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.backbone.encode_images(pixels)  # [B, D]
