"""Prometheus metrics, one set per app. Label values come from fixed sets or from operator
configuration (model names), never from request content: no labels, paths or class names.

With several worker processes (`--workers N`), prometheus_client's multiprocess mode is on (the
supervisor sets PROMETHEUS_MULTIPROC_DIR, a fresh folder per service run, for every worker): each
worker writes its values to files there, and any worker's /metrics adds up every worker's. Counters
and histograms are summed; each gauge says in its help text how it aggregates (`multiprocess_mode`:
livesum = summed over live workers, livemax = the largest value of any live worker). Per-version
facts (`clipserve_model_info`) are read from the answering worker's registry at scrape time: every
worker applies the same state file, so they agree once a change has propagated. With one process
(the default) the same metrics live in an ordinary in-process registry.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator

import torch
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import InfoMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

LATENCY_BUCKETS = tuple(0.0005 * 1.5**i for i in range(30))  # 0.5 ms .. ~64 s, geometric
GC_BUCKETS = tuple(0.0001 * 2**i for i in range(14))  # 0.1 ms .. ~0.8 s, doubling
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
# Results of checkpoint loads (catalog.lifecycle._load_result) and swaps. Created at zero so that the
# first failure is an increase Prometheus can see (a series born at 1 has no increase).
LOAD_RESULTS = ("ok", "not_found", "incompatible", "corrupt", "error")
SWAP_RESULTS = ("ok", "refused")
STATE_RESULTS = ("ok", "refused")
SUMMED = " (summed over worker processes)"
LARGEST = " (the largest of any worker process)"
ModelFacts = Callable[[], Iterable[tuple[str, str, str, str]]]  # (model, version, method, sha256)


def multiprocess_dir() -> str | None:
    """The folder of multiprocess mode, when prometheus_client is in it (decided by this variable)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")  # noqa: SIM112


class Metrics:
    def __init__(self) -> None:
        own = CollectorRegistry()  # where the metric objects live
        own.register(_Refresh(self.sample_gpu_memory))  # first: fresh GPU figures in every scrape
        self._define(own)
        self.model_info = ModelInfoCollector()  # fed by the runtime's registry
        if multiprocess_dir() is None:
            self.registry = own
        else:  # every worker's files, plus this worker's fresh GPU figures and model facts
            self.registry = CollectorRegistry()
            self.registry.register(_Refresh(self.sample_gpu_memory))
            MultiProcessCollector(self.registry)
        self.registry.register(self.model_info)
        for reason in REJECTIONS:
            self.rejections.labels(reason=reason)
        for stage in STAGES:
            self.stage_duration.labels(stage=stage)
        for result in LOAD_RESULTS:
            self.loads.labels(result=result)
        for result in SWAP_RESULTS:
            self.swaps.labels(result=result)
        for result in STATE_RESULTS:
            self.state_updates.labels(result=result)

    def render(self) -> bytes:
        """The text exposition format of /metrics."""
        return generate_latest(self.registry)

    def _define(self, r: CollectorRegistry) -> None:
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
            "clipserve_queue_depth",
            "Images waiting for an encoder pass" + SUMMED,
            ["lane"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.queue_capacity = Gauge(
            "clipserve_queue_capacity_images",
            "Images a lane queues before answering 429 (max_queue_images)" + SUMMED,
            registry=r,
            multiprocess_mode="livesum",
        )
        self.inflight = Gauge(
            "clipserve_inflight_requests",
            "Inference requests in progress (/classify, /, /v1/embeddings, /v2 infer)" + SUMMED,
            registry=r,
            multiprocess_mode="livesum",
        )
        self.rejections = Counter(
            "clipserve_rejected_requests", "Requests refused, by reason", ["reason"], registry=r
        )
        self._define_catalog(r)
        self._define_gpu(r)
        self._define_process(r)

    def _define_catalog(self, r: CollectorRegistry) -> None:
        self.cache_hits = Counter(
            "clipserve_text_cache_hits", "Label embeddings served from cache", registry=r
        )
        self.cache_misses = Counter(
            "clipserve_text_cache_misses", "Label embeddings encoded on demand", registry=r
        )
        self.cache_entries = Gauge(
            "clipserve_text_cache_entries",
            "Label embeddings cached (each worker process caches its own)" + SUMMED,
            registry=r,
            multiprocess_mode="livesum",
        )
        self.loads = Counter(
            "clipserve_checkpoint_loads",
            "Checkpoint loads by result (each worker process loads every version)",
            ["result"],
            registry=r,
        )
        self.swaps = Counter(
            "clipserve_checkpoint_swaps",
            "Version switches of loaded models by result (each worker process switches)",
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
            "Model versions held in memory (active plus retired ones still serving requests)" + LARGEST,
            registry=r,
            multiprocess_mode="livemax",
        )
        self.state_updates = Counter(
            "clipserve_state_file_updates",
            "Changes of the checkpoint folder's state file applied by a worker process, by result "
            "(refused: corrupt, or names a missing, changed or unloadable file)",
            ["result"],
            registry=r,
        )
        self.state_refused = Gauge(
            "clipserve_state_file_refused",
            "1 while the state file's current contents are refused (the last good state serves)" + LARGEST,
            registry=r,
            multiprocess_mode="livemax",
        )
        self.state_lag = Gauge(
            "clipserve_state_file_lag_seconds",
            "Seconds from the last write of the state file to this process serving it (wall clocks; "
            "replicas on other machines add their clock skew)" + LARGEST,
            registry=r,
            multiprocess_mode="livemax",
        )

    def _define_gpu(self, r: CollectorRegistry) -> None:
        self.gpu_allocated = Gauge(
            "clipserve_gpu_memory_allocated_bytes",
            "GPU memory held by tensors" + SUMMED,
            ["device"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.gpu_reserved = Gauge(
            "clipserve_gpu_memory_reserved_bytes",
            "GPU memory reserved by torch's caching allocator (allocated plus cached blocks)" + SUMMED,
            ["device"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.gpu_total = Gauge(
            "clipserve_gpu_memory_total_bytes",
            "GPU memory of the device" + LARGEST,
            ["device"],
            registry=r,
            multiprocess_mode="livemax",
        )

    def _define_process(self, r: CollectorRegistry) -> None:
        # Process metrics as plain series (not prometheus_client's ProcessCollector, which reads only
        # its own process and is not aggregated in multiprocess mode): each worker updates its own
        # values (service.process_stats), and multiprocess mode sums the live workers' values.
        self.process_cpu = Counter(
            "clipserve_process_cpu_seconds", "CPU time (user + system) of the service's processes", registry=r
        )
        self.process_memory = Gauge(
            "clipserve_process_resident_memory_bytes",
            "Resident memory of the service's live processes" + SUMMED,
            multiprocess_mode="livesum",
            registry=r,
        )
        self.process_open_fds = Gauge(
            "clipserve_process_open_fds",
            "Open file descriptors of the service's live processes" + SUMMED,
            multiprocess_mode="livesum",
            registry=r,
        )
        self.gc_pause = Histogram(
            "clipserve_gc_pause_seconds",
            "Python garbage-collection pauses by generation: every thread of the process waits "
            "(service/heap.py)",
            ["generation"],
            buckets=GC_BUCKETS,
            registry=r,
        )
        self.model_requests = Counter(
            "clipserve_model_requests",
            "Inference requests by model and status code; model is a loaded model's name (aliases "
            "resolved), or 'unknown' when the request named none that is loaded or was refused first",
            ["model", "code"],
            registry=r,
        )

    def sample_gpu_memory(self) -> None:
        """GPU memory per CUDA device from torch's allocator: at every scrape, and every few
        seconds in each worker (service.runtime). No samples until this process has initialised
        CUDA (so a CPU service exports none, and a scrape never creates a CUDA context)."""
        if not torch.cuda.is_initialized():
            return
        for index in range(torch.cuda.device_count()):
            device = f"cuda:{index}"
            self.gpu_allocated.labels(device=device).set(torch.cuda.memory_allocated(index))
            self.gpu_reserved.labels(device=device).set(torch.cuda.memory_reserved(index))
            self.gpu_total.labels(device=device).set(torch.cuda.get_device_properties(index).total_memory)


class ModelInfoCollector(Collector):
    """`clipserve_model_info{model, version, method, sha256} 1` for the active version of each model,
    read at scrape time from the registry of the answering process."""

    def __init__(self) -> None:
        self.source: ModelFacts = lambda: ()

    def describe(self) -> Iterator[Metric]:
        return iter([self._family()])

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for model, version, method, sha256 in self.source():
            family.add_metric([model], {"version": version, "method": method, "sha256": sha256})
        return iter([family])

    @staticmethod
    def _family() -> InfoMetricFamily:
        return InfoMetricFamily("clipserve_model", "Active version of each loaded model", labels=["model"])


class _Refresh(Collector):
    """Runs `update` when a scrape starts; exports nothing itself."""

    def __init__(self, update: Callable[[], None]) -> None:
        self.update = update

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        self.update()
        return iter(())
