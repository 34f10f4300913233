"""ONNX export of image encoders: ONNX Runtime (CPU, fp32) equals torch within 1e-3, for any
batch size. The encoder is passed as a callable (a learner's `image_embeddings`), the path
MaPLe's prompted encoder takes; the stock nn.Module path is covered by `clipserve export`."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch

from models.backbone import Backbone
from models.onnx_export import INPUT_NAME, export_image_encoder, onnx_max_difference
from models.prompts import CoOp, CoOpConfig


def test_onnx_runtime_matches_torch_with_a_dynamic_batch(tiny_backbone: Backbone, tmp_path: Path) -> None:
    learner = CoOp(tiny_backbone, ["cat", "dog"], CoOpConfig(n_ctx=2)).eval()
    size = tiny_backbone.preprocessing.image_size
    path = export_image_encoder(learner.image_embeddings, tmp_path / "encoder.onnx", size)
    batch_axis = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert onnx.load(str(path)).graph.input[0].name == INPUT_NAME and batch_axis.dim_param  # symbolic
    generator = torch.Generator().manual_seed(0)
    for batch in (1, 5):
        pixels = torch.randn(batch, 3, size, size, generator=generator)
        assert onnx_max_difference(learner.image_embeddings, path, pixels) < 1e-3
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temp file
