"""Backends, end to end. backend=onnx: the image encoder is exported at start-up (or reused), the
shared lane runs on ONNX Runtime, answers equal the torch backend's within tolerance, and an ONNX
file from another backbone is refused at start-up with a clear error. torch on CUDA: bf16, and
answers equal fp32 within bf16 tolerance (`gpu`: skipped without CUDA)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from models.backbone import Backbone, build_backbone
from models.onnx_export import export_image_encoder, stock_image_encoder
from tests.service.conftest import (
    CLASSES,
    admin_headers,
    assert_matches,
    image_bytes,
    make_learner,
    multipart,
    offline_scores,
    running,
    server_settings,
    wait_until,
    write_checkpoint,
)

LABELS = ["cat", "dog", "a red car"]


@pytest.mark.slow
def test_onnx_backend_exports_once_and_matches_torch(tmp_path: Path, tiny_backbone: Backbone) -> None:
    learner = make_learner(tiny_backbone, seed=1)
    write_checkpoint(tmp_path / "ckpt" / "pets.safetensors", learner)
    onnx_path = tmp_path / "encoder.onnx"
    images = [image_bytes(seed) for seed in range(3)]
    settings = server_settings(tmp_path / "ckpt", backend="onnx", onnx_path=onnx_path)
    with running(settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        backend = client.get("/v1/models", headers=admin_headers()).json()["settings"]["backend"]
        zeroshot = client.post("/classify", **multipart(images, LABELS))
        pets = client.post("/classify", **multipart(images, model="pets"))
    exported_at = onnx_path.stat().st_mtime_ns
    with running(settings):  # a second start reuses the file
        pass

    assert backend == "onnx"
    assert onnx_path.stat().st_mtime_ns == exported_at
    for i, blob in enumerate(images):
        expected = offline_scores(tiny_backbone, None, blob, LABELS)
        assert_matches(zeroshot.json()["results"][i], expected, atol=1e-3)
        assert_matches(
            pets.json()["results"][i], offline_scores(tiny_backbone, learner, blob, CLASSES), atol=1e-3
        )


@pytest.mark.slow
def test_an_onnx_file_from_another_backbone_is_refused(tmp_path: Path) -> None:
    other = build_backbone("clipserve-tiny-vit", pretrained=None, seed=1)
    onnx_path = export_image_encoder(stock_image_encoder(other), tmp_path / "other.onnx", 32)
    settings = server_settings(None, backend="onnx", onnx_path=onnx_path)
    with running(settings, wait_ready=False) as server:
        wait_until(lambda: server.state.error is not None, timeout_s=60)
        ready = httpx.get(server.url + "/health/ready")
    assert ready.status_code == 503
    assert "does not match the running backbone" in ready.json()["error"]["message"]


@pytest.mark.gpu
def test_torch_on_cuda_runs_bf16_and_matches_fp32_within_tolerance(
    tmp_path: Path, tiny_backbone: Backbone
) -> None:
    blob = image_bytes(2)
    with running(server_settings(tmp_path, device="cuda")) as server:
        backbone = httpx.get(server.url + "/v1/models").json()["backbone"]
        body = httpx.post(server.url + "/classify", **multipart([blob], LABELS)).json()
    assert backbone["precision"] == "bf16" and backbone["device"].startswith("cuda")
    expected = offline_scores(tiny_backbone, None, blob, LABELS)  # fp32 on the CPU
    for prediction in body["results"][0]["predictions"]:
        assert abs(prediction["cosine"] - expected[prediction["label"]][1]) < 3e-2
