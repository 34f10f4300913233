"""Export an image encoder to ONNX with a dynamic batch axis, and check it against torch.

Takes any nn.Module or callable mapping [B, 3, H, W] pixels to [B, D] embeddings, so the stock
CLIP image tower and a prompt learner's own `image_embeddings` (MaPLe's prompted ViT, with its
prompts baked in as constants) go through the same function. Used by `clipserve export` and by
the service's ONNX Runtime backend. Uses the torch.export-based exporter (the TorchScript one
cannot lower nn.MultiheadAttention's fused kernel). Export in fp32: ONNX Runtime's CPU provider
has no bf16 kernels for most ops.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.backbone import Backbone

INPUT_NAME = "pixels"
OUTPUT_NAME = "embeddings"
DEFAULT_OPSET = 18
MAX_BATCH = 65536


class ImageEncoder(nn.Module):
    """[B, 3, H, W] preprocessed pixels -> [B, D] L2-normalised fp32 embeddings."""

    def __init__(self, encode: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.encode = encode
        if isinstance(encode, nn.Module):
            self.add_module("encoder", encode)  # so its tensors are the graph's weights

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encode(pixels).float(), dim=-1)


def stock_image_encoder(backbone: Backbone) -> ImageEncoder:
    """The backbone's own image tower, shared by every checkpoint whose image side is stock."""
    return ImageEncoder(backbone.model.visual)


def export_image_encoder(
    encoder: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    path: str | Path,
    image_size: int,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write `encoder` as ONNX (input "pixels" [batch, 3, S, S], output "embeddings" [batch, D]),
    atomically (temp file + rename), as one self-contained file (models under 2 GB)."""
    path = Path(path)
    module = encoder if isinstance(encoder, ImageEncoder) else ImageEncoder(encoder)
    module.eval()
    example = torch.zeros(2, 3, image_size, image_size, device=_device_of(module))
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with torch.no_grad(), _quiet_exporter():
            torch.onnx.export(
                module,
                (example,),
                str(temp),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return path


def onnx_max_difference(
    encoder: nn.Module | Callable[[torch.Tensor], torch.Tensor], path: str | Path, pixels: torch.Tensor
) -> float:
    """Largest |ONNX Runtime (CPU) - torch| over `pixels`; the export check and its test use it."""
    import onnxruntime  # imported here: only exporting and checking need it

    module = encoder if isinstance(encoder, ImageEncoder) else ImageEncoder(encoder)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = module.eval()(pixels.to(_device_of(module))).cpu()
    actual = session.run([OUTPUT_NAME], {INPUT_NAME: pixels.cpu().float().numpy()})[0]
    return float((torch.from_numpy(actual) - expected).abs().max())


def _device_of(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    # The exporter logs every pass at INFO ("[torch.onnx] Run decompositions..."); keep warnings.
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
