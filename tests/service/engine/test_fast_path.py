"""The GPU fast path, end to end: settings, refusal on a CPU service, and (`gpu`) a CUDA service
decoding JPEGs with nvJPEG and replaying CUDA graphs that answers like the fp32 CPU reference and
refuses bad images exactly as the CPU service does."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bench.images import encode, photo, photo_jpeg
from models.backbone import Backbone
from service.settings import Settings
from tests.service.conftest import (
    multipart,
    offline_scores,
    running,
    server_settings,
    wait_until,
)

LABELS = ["cat", "dog", "a red car"]


def test_fast_path_settings_parse_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPSERVE_CUDA_GRAPH_BUCKETS", "32, 8 1 8")
    monkeypatch.setenv("CLIPSERVE_DECODE_DEVICE", "cpu")
    monkeypatch.setenv("CLIPSERVE_CUDA_GRAPHS", "false")
    settings = Settings()
    assert settings.cuda_graph_buckets == [1, 8, 32]
    assert settings.decode_device == "cpu" and settings.cuda_graphs is False
    with pytest.raises(ValueError, match="batch sizes must be >= 1"):
        Settings(cuda_graph_buckets="0,4")
    for name in ("CUDA_GRAPH_BUCKETS", "DECODE_DEVICE", "CUDA_GRAPHS"):
        monkeypatch.delenv(f"CLIPSERVE_{name}")
    defaults = Settings()
    assert defaults.cuda_graph_buckets == [] and defaults.decode_device == "auto" and defaults.cuda_graphs


def test_gpu_decoding_on_a_cpu_service_is_refused_at_start_up(tmp_path: Path) -> None:
    with running(server_settings(tmp_path, decode_device="cuda"), wait_ready=False) as server:
        wait_until(lambda: server.state.error is not None, timeout_s=60)
        ready = httpx.get(server.url + "/health/ready")
    assert ready.status_code == 503
    assert "decode_device='cuda' needs the service on CUDA" in ready.json()["error"]["message"]


def jpeg_and_png_request() -> list[bytes]:
    return [photo_jpeg(640, 480, 0), encode(photo(120, 90, 1), "PNG"), photo_jpeg(300, 500, 2)]


@pytest.mark.gpu
def test_cuda_service_with_nvjpeg_and_graphs_answers_like_the_cpu_reference(
    tmp_path: Path, tiny_backbone: Backbone
) -> None:
    images = jpeg_and_png_request()
    settings = server_settings(tmp_path, device="cuda", max_batch_size=8)  # decode auto, graphs on
    with running(settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        assert server.state.runtime is not None
        decoder, encoder = server.state.runtime.decoder, server.state.runtime.batcher.encoder
        body = client.post("/classify", **multipart(images, LABELS)).json()
    assert type(decoder).__name__ == "DeviceDecoder" and type(encoder).__name__ == "BucketedEncoder"
    for i, blob in enumerate(images):
        expected = offline_scores(tiny_backbone, None, blob, LABELS)  # Pillow + fp32 on the CPU
        for prediction in body["results"][i]["predictions"]:
            # bf16 encoder (3e-2, as test_backends) plus nvJPEG's and the GPU resize's pixel differences
            assert abs(prediction["cosine"] - expected[prediction["label"]][1]) < 4e-2


@pytest.mark.gpu
def test_cuda_service_refuses_bad_images_like_the_cpu_service(tmp_path: Path) -> None:
    good = photo_jpeg(64, 48)
    bad = {
        "truncated": [good, good[:-300]],
        "tiff": [good, encode(photo(16, 16), "TIFF")],
        "header": [b"\xff\xd8\xff\xe0 not really a jpeg \xff\xd9"],
    }
    answers = {}
    for device in ("cpu", "cuda"):
        with running(server_settings(tmp_path, device=device)) as server:
            for name, images in bad.items():
                response = httpx.post(server.url + "/classify", **multipart(images, LABELS), timeout=30)
                answers[device, name] = (response.status_code, response.json()["error"]["message"])
    for name in bad:
        assert answers["cuda", name] == answers["cpu", name], name
        assert answers["cpu", name][0] in (400, 415)
