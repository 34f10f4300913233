"""The ONNX Runtime session options the service runs with (bench/onnx_cpu.py measured why): all graph
optimisations, torch's thread count, and intra-op threads that sleep instead of spin-waiting, so
torch work in the same process is not starved of the cores after every ONNX Runtime run."""

from __future__ import annotations

from pathlib import Path

import onnxruntime
import torch

from models.backbone import Backbone
from models.onnx_export import export_image_encoder, stock_image_encoder
from service.engine.onnx_backend import SPINNING, OnnxImageEncoder, session_options


def test_session_options_sleep_idle_threads_and_take_torchs_thread_count() -> None:
    options = session_options()
    assert options.get_session_config_entry(SPINNING) == "0"
    assert options.intra_op_num_threads == torch.get_num_threads()
    assert options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_the_encoder_runs_with_those_options(tiny_backbone: Backbone, tmp_path: Path) -> None:
    size = tiny_backbone.preprocessing.image_size
    path = export_image_encoder(stock_image_encoder(tiny_backbone), tmp_path / "encoder.onnx", size)
    encoder = OnnxImageEncoder(path, torch.device("cpu"))
    used = encoder.session.get_session_options()
    assert used.get_session_config_entry(SPINNING) == "0"
    assert used.intra_op_num_threads == torch.get_num_threads()
    assert encoder.providers == ["CPUExecutionProvider"]
