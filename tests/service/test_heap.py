"""The serving process's heap (service/heap.py): start-up objects are frozen out of full
collections before the service says ready, and every collection's pause reaches /metrics."""

from __future__ import annotations

import gc

import httpx
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from service.heap import GcPauses
from tests.service.conftest import running, server_settings


def observed(histogram: Histogram, generation: str) -> float:
    for metric in histogram.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.labels == {"generation": generation}:
                return sample.value
    return 0.0


def test_pauses_are_recorded_while_installed_and_only_then() -> None:
    pauses = GcPauses()
    histogram = Histogram("pause", "test", ["generation"], registry=CollectorRegistry())
    pauses.install()
    try:
        gc.collect()
        gc.collect(0)
    finally:
        pauses.remove()
    gc.collect()  # removed: not recorded
    pauses.flush(histogram)
    assert observed(histogram, "2") == 1 and observed(histogram, "0") >= 1
    assert pauses.pending == type(pauses.pending)(maxlen=pauses.pending.maxlen)  # flushed
    assert pauses not in gc.callbacks


def test_the_start_up_heap_is_frozen_before_ready_and_pauses_are_exported() -> None:
    with running(server_settings()) as server:
        runtime = server.state.runtime
        tracked = {id(obj) for obj in gc.get_objects()}  # the frozen (permanent) generation is not listed
        frozen_parts = [runtime.backbone.model, runtime.registry, runtime.batcher]
        assert gc.get_freeze_count() > 0
        assert [id(part) in tracked for part in frozen_parts] == [False] * len(frozen_parts)
        gc.collect()
        text = httpx.get(server.url + "/metrics", timeout=10).text
    counts = {
        sample.labels["generation"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "clipserve_gc_pause_seconds"
        for sample in family.samples
        if sample.name.endswith("_count")
    }
    assert counts.get("2", 0) >= 1, counts
