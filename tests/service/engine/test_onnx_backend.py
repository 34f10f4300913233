"""backend=onnx is CPU only, refused on CUDA up front (see below). The ONNX Runtime session options
the service runs with (bench/onnx_cpu.py measured why): all graph
optimisations, torch's thread count, and intra-op threads that sleep instead of spin-waiting, so
torch work in the same process is not starved of the cores after every ONNX Runtime run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import onnxruntime
import pytest
import torch
from pydantic import ValidationError

from models.backbone import Backbone
from models.onnx_export import export_image_encoder, stock_image_encoder
from service.engine.onnx_backend import SPINNING, OnnxImageEncoder, build_onnx_encoder, session_options
from service.settings import Settings


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


# backend=onnx on CUDA is REFUSED (not served through IO binding): the CUDA provider would copy every
# batch to the host and back, and IO binding cannot be tested on the GPU machine (CPU-only
# onnxruntime there). The three places that refuse it, each before any work is done:


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_settings_refuse_onnx_on_an_explicit_cuda_device(device: str) -> None:
    with pytest.raises(ValidationError, match="backend=onnx runs on the CPU only") as refused:
        Settings(device=device, backend="onnx")
    assert "backend=torch" in str(refused.value) and "device=cpu" in str(refused.value)
    assert Settings(device="cpu", backend="onnx").backend == "onnx"
    assert Settings(device="auto", backend="onnx").backend == "onnx"  # resolved (and checked) at start-up


def test_start_up_refuses_onnx_when_auto_resolves_to_cuda(tmp_path: Path) -> None:
    """device=auto on a GPU machine: refused before the image encoder is exported."""
    onnx_path = tmp_path / "encoder.onnx"
    settings = Settings(backend="onnx", onnx_path=onnx_path)
    backbone = SimpleNamespace(device=torch.device("cuda", 0))
    with pytest.raises(RuntimeError, match=r"runs on the CPU only.*the service device is cuda:0"):
        build_onnx_encoder(settings, backbone)  # type: ignore[arg-type]
    assert not onnx_path.exists()


def test_the_encoder_itself_takes_no_cuda_device(tiny_backbone: Backbone, tmp_path: Path) -> None:
    size = tiny_backbone.preprocessing.image_size
    path = export_image_encoder(stock_image_encoder(tiny_backbone), tmp_path / "encoder.onnx", size)
    with pytest.raises(ValueError, match="backend=onnx runs on the CPU only"):
        OnnxImageEncoder(path, torch.device("cuda"))
