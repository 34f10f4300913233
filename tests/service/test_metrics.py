"""Metrics, end to end: every metric the issue names is exposed with the right type and labels,
parsed with prometheus_client's own parser, and no label value comes from request content."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from models.backbone import Backbone
from tests.service.conftest import (
    admin_headers,
    image_bytes,
    make_learner,
    multipart,
    running,
    server_settings,
    write_checkpoint,
)

EXPECTED_TYPES = {
    "clipserve_requests": "counter",
    "clipserve_request_duration_seconds": "histogram",
    "clipserve_stage_duration_seconds": "histogram",
    "clipserve_batch_size": "histogram",
    "clipserve_queue_depth": "gauge",
    "clipserve_inflight_requests": "gauge",
    "clipserve_rejected_requests": "counter",
    "clipserve_text_cache_hits": "counter",
    "clipserve_text_cache_misses": "counter",
    "clipserve_text_cache_entries": "gauge",
    "clipserve_checkpoint_loads": "counter",
    "clipserve_checkpoint_swaps": "counter",
    "clipserve_checkpoint_load_duration_seconds": "histogram",
    "clipserve_model_versions_in_memory": "gauge",
    "clipserve_model_info": "gauge",  # an Info metric: exposed as a gauge of 1 with labels
}
USER_STRINGS = ["unique-user-label-7x", "secret-model-name-7x", "nope-unique-path-7x"]


def test_metrics_cover_the_data_path_and_never_echo_request_content(
    tmp_path: Path, tiny_backbone: Backbone
) -> None:
    write_checkpoint(tmp_path / "pets.safetensors", make_learner(tiny_backbone, seed=1))
    write_checkpoint(tmp_path / "versions/pets-2.safetensors", make_learner(tiny_backbone, seed=2))
    blob = image_bytes(1)
    with running(server_settings(tmp_path)) as server, httpx.Client(base_url=server.url) as client:
        assert client.post("/classify", **multipart([blob], [USER_STRINGS[0], "dog"])).status_code == 200
        assert client.post("/classify", **multipart([blob], model="pets")).status_code == 200
        assert client.post("/classify", **multipart([blob], ["a"], model=USER_STRINGS[1])).status_code == 404
        assert client.post("/classify", **multipart([b"junk"], ["a"])).status_code == 415
        assert client.get("/" + USER_STRINGS[2]).status_code == 404
        swap = client.post(
            "/admin/models/pets/swap", json={"file": "versions/pets-2.safetensors"}, headers=admin_headers()
        )
        assert swap.status_code == 200
        text = client.get("/metrics").text

    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name, kind in EXPECTED_TYPES.items():
        assert name in families and families[name].type == kind, (name, families.get(name))
    samples = [sample for family in families.values() for sample in family.samples]
    assert not any(user in text for user in USER_STRINGS)

    def value(name: str, **labels: str) -> float:
        return next(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())

    assert value("clipserve_request_duration_seconds_count", route="/classify") == 4
    assert value("clipserve_requests_total", route="/classify", code="200") == 2
    assert value("clipserve_requests_total", route="unmatched", code="404") == 1
    for stage in ("decode", "text", "queue", "encode", "score"):
        assert value("clipserve_stage_duration_seconds_count", stage=stage) >= 2, stage
    assert value("clipserve_batch_size_sum", lane="shared") == 2
    assert value("clipserve_queue_depth", lane="shared") == 0
    assert value("clipserve_inflight_requests") == 0
    assert value("clipserve_rejected_requests_total", reason="not_found") == 1
    assert value("clipserve_rejected_requests_total", reason="unsupported_media") == 1
    assert value("clipserve_text_cache_misses_total") == 2
    assert value("clipserve_checkpoint_loads_total", result="ok") == 2
    assert value("clipserve_checkpoint_swaps_total", result="ok") == 1
    assert value("clipserve_checkpoint_load_duration_seconds_count") == 2
    assert value("clipserve_model_versions_in_memory") == 2
    info = {s.labels["model"]: s.labels for s in samples if s.name == "clipserve_model_info"}
    assert info["pets"]["version"] == "2" and info["pets"]["method"] == "coop"
    assert set(info) == {"zeroshot", "pets"}
    # Health and /metrics itself stay out of the request metrics.
    assert not any(s.labels.get("route", "").startswith(("/health", "/metrics")) for s in samples)
