"""Prometheus metrics, one registry per app. Label values come from fixed sets or from operator
configuration (model names), never from request content: no labels, paths or class names."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = tuple(0.0005 * 1.5**i for i in range(30))  # 0.5 ms .. ~64 s, geometric
BATCH_BUCKETS = tuple(float(2**i) for i in range(11))  # 1 .. 1024
STAGES = ("decode", "text", "queue", "encode", "score")
REJECTIONS = (
    "queue_full",
    "timeout",
    "too_large",
    "invalid",
    "bad_input",
    "unsupported_media",
    "not_found",
    "not_ready",
)


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
        self.inflight = Gauge("clipserve_inflight_requests", "/classify requests in progress", registry=r)
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
        for reason in REJECTIONS:
            self.rejections.labels(reason=reason)
        for stage in STAGES:
            self.stage_duration.labels(stage=stage)
