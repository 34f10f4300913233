"""Prometheus metrics, one registry per app. Label values come from fixed sets or from operator
configuration (model names), never from request content: no labels, paths or class names."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = tuple(0.0005 * 1.5**i for i in range(30))  # 0.5 ms .. ~64 s, geometric
BATCH_BUCKETS = tuple(float(2**i) for i in range(11))  # 1 .. 1024
STAGES = ("decode", "text", "queue", "encode", "score")
REJECTIONS = (
    "queue_full",
    "inflight_limit",
    "timeout",
    "too_large",
    "invalid",
    "bad_input",
    "unsupported_media",
    "not_found",
    "not_ready",
)
# Results of checkpoint loads (registry._load_result) and swaps. Created at zero so that the first
# failure is an increase Prometheus can see (a series born at 1 has no increase).
LOAD_RESULTS = ("ok", "not_found", "incompatible", "corrupt", "error")
SWAP_RESULTS = ("ok", "refused")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "clipserve_requests", "HTTP requests by route and status", ["route", "code"], registry=r
        )
        self.request_duration = Histogram(
            "clipserve_request_duration_seconds",
            "HTTP request duration by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_duration = Histogram(
            "clipserve_stage_duration_seconds",
            "Time per /classify stage: decode, text, queue, encode (per batch), score",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "clipserve_batch_size",
            "Images per image-encoder pass, by lane kind",
            ["lane"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "clipserve_queue_depth", "Images waiting for an encoder pass", ["lane"], registry=r
        )
        self.queue_capacity = Gauge(
            "clipserve_queue_capacity_images",
            "Images a lane queues before answering 429 (max_queue_images)",
            registry=r,
        )
        self.inflight = Gauge(
            "clipserve_inflight_requests",
            "Inference requests in progress (/classify, /, /v1/embeddings, /v2 infer)",
            registry=r,
        )
        self.rejections = Counter(
            "clipserve_rejected_requests", "Requests refused, by reason", ["reason"], registry=r
        )
        self.cache_hits = Counter(
            "clipserve_text_cache_hits", "Label embeddings served from cache", registry=r
        )
        self.cache_misses = Counter(
            "clipserve_text_cache_misses", "Label embeddings encoded on demand", registry=r
        )
        self.cache_entries = Gauge("clipserve_text_cache_entries", "Label embeddings cached", registry=r)
        self.loads = Counter(
            "clipserve_checkpoint_loads", "Checkpoint loads by result", ["result"], registry=r
        )
        self.swaps = Counter(
            "clipserve_checkpoint_swaps",
            "Version switches of loaded models by result",
            ["result"],
            registry=r,
        )
        self.load_duration = Histogram(
            "clipserve_checkpoint_load_duration_seconds",
            "Time to load, verify and warm a checkpoint",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.versions_in_memory = Gauge(
            "clipserve_model_versions_in_memory",
            "Model versions held in memory (active plus retired ones still serving requests)",
            registry=r,
        )
        self.model_info = Info(
            "clipserve_model", "Active version of each loaded model", ["model"], registry=r
        )
        r.register(CudaMemoryCollector())
        # Process metrics as plain series (not prometheus_client's ProcessCollector, which reads only
        # its own process and is not aggregated in multiprocess mode): each worker updates its own
        # values (service.process_stats), and multiprocess mode sums the live workers' values.
        self.process_cpu = Counter(
            "clipserve_process_cpu_seconds", "CPU time (user + system) of the service's processes", registry=r
        )
        self.process_memory = Gauge(
            "clipserve_process_resident_memory_bytes",
            "Resident memory of the service's live processes",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.process_open_fds = Gauge(
            "clipserve_process_open_fds",
            "Open file descriptors of the service's live processes",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.model_requests = Counter(
            "clipserve_model_requests",
            "Inference requests by model and status code; model is a loaded model's name (aliases "
            "resolved), or 'unknown' when the request named none that is loaded or was refused first",
            ["model", "code"],
            registry=r,
        )
        for reason in REJECTIONS:
            self.rejections.labels(reason=reason)
        for stage in STAGES:
            self.stage_duration.labels(stage=stage)
        for result in LOAD_RESULTS:
            self.loads.labels(result=result)
        for result in SWAP_RESULTS:
            self.swaps.labels(result=result)


class CudaMemoryCollector(Collector):
    """GPU memory per CUDA device from torch's allocator, read only when Prometheus scrapes.

    No samples until this process has initialised CUDA (so a CPU service exports none, and a
    scrape never creates a CUDA context)."""

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        allocated, reserved, total = families = self._families()
        if torch.cuda.is_initialized():
            for index in range(torch.cuda.device_count()):
                device = f"cuda:{index}"
                allocated.add_metric([device], torch.cuda.memory_allocated(index))
                reserved.add_metric([device], torch.cuda.memory_reserved(index))
                total.add_metric([device], torch.cuda.get_device_properties(index).total_memory)
        return iter(families)

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                "clipserve_gpu_memory_allocated_bytes", "GPU memory held by tensors", labels=["device"]
            ),
            GaugeMetricFamily(
                "clipserve_gpu_memory_reserved_bytes",
                "GPU memory reserved by torch's caching allocator (allocated plus cached blocks)",
                labels=["device"],
            ),
            GaugeMetricFamily(
                "clipserve_gpu_memory_total_bytes", "GPU memory of the device", labels=["device"]
            ),
        ]
