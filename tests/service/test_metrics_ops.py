"""Metrics added for operations (issue 8): GPU memory read at scrape time, the queue capacity
behind the saturation alert, and load/swap results that exist at zero so a first failure is an
increase Prometheus can alert on."""

from __future__ import annotations

import httpx
import pytest
import torch
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.metrics import LOAD_RESULTS, SWAP_RESULTS, Metrics
from tests.service.conftest import running, server_settings

GPU_FAMILIES = {
    "clipserve_gpu_memory_allocated_bytes",
    "clipserve_gpu_memory_reserved_bytes",
    "clipserve_gpu_memory_total_bytes",
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_load_and_swap_results_are_exported_at_zero() -> None:
    exported = samples(generate_latest(Metrics().registry).decode())
    for result in LOAD_RESULTS:
        assert exported[("clipserve_checkpoint_loads_total", (("result", result),))] == 0
    for result in SWAP_RESULTS:
        assert exported[("clipserve_checkpoint_swaps_total", (("result", result),))] == 0


def test_gpu_memory_is_declared_and_empty_until_cuda_is_initialised() -> None:
    if torch.cuda.is_initialized():
        pytest.skip("CUDA is already initialised in this process")
    text = generate_latest(Metrics().registry).decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert set(families) >= GPU_FAMILIES
    assert all(families[name].type == "gauge" and not families[name].samples for name in GPU_FAMILIES)
    assert not torch.cuda.is_initialized()  # a scrape never creates a CUDA context


@pytest.mark.gpu
def test_gpu_memory_reports_each_device_at_scrape_time() -> None:
    block = torch.empty(64 * 1024 * 1024, dtype=torch.uint8, device="cuda:0")
    exported = samples(generate_latest(Metrics().registry).decode())
    device = (("device", "cuda:0"),)
    allocated = exported[("clipserve_gpu_memory_allocated_bytes", device)]
    reserved = exported[("clipserve_gpu_memory_reserved_bytes", device)]
    total = exported[("clipserve_gpu_memory_total_bytes", device)]
    assert block.numel() <= allocated <= reserved < total
    assert total == torch.cuda.get_device_properties(0).total_memory
    del block


def test_queue_capacity_is_the_configured_max_queue_images() -> None:
    with running(server_settings(max_queue_images=7)) as server:
        exported = samples(httpx.get(server.url + "/metrics").text)
    assert exported[("clipserve_queue_capacity_images", ())] == 7
