"""The clipserve Grafana dashboard, as code. `python deploy/generate.py` writes it to
deploy/grafana/dashboards/clipserve.json, which Grafana provisions (docker-compose.yml) or you
import. Every query reads clipserve_ metrics the service exports (tests/deploy checks it).

Variables: $datasource (a Prometheus), $job (default clipserve) and $instance (replicas).
"""

from __future__ import annotations

from typing import Any

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job="$job", instance=~"$instance"'
RATE = "$__rate_interval"
QUANTILES = (0.5, 0.95, 0.99)


def target(expr: str, legend: str = "", ref: str = "A", **extra: Any) -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": ref, **extra}


def panel(
    kind: str, title: str, pos: tuple[int, int, int, int], targets: list[dict[str, Any]], **kw: Any
) -> dict[str, Any]:
    x, y, w, h = pos
    unit = kw.pop("unit", "short")
    result = {
        "type": kind,
        "title": title,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": kw.pop("options", {}),
    }
    result.update(kw)
    return result


def row(title: str, y: int) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}}


def quantiles(metric: str, by: str, legend: str) -> list[dict[str, Any]]:
    """p50/p95/p99 of a histogram, one series per value of `by`."""
    return [
        target(
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{SEL}}}[{RATE}])))",
            f"p{round(q * 100)} {legend}",
        )
        for q in QUANTILES
    ]


def overview(y: int) -> list[dict[str, Any]]:
    requests = f"sum(rate(clipserve_requests_total{{{SEL}}}[{RATE}]))"
    errors = f'sum(rate(clipserve_requests_total{{{SEL}, code=~"5.."}}[{RATE}]))'
    return [
        row("Overview", y),
        panel("stat", "Replicas scraped", (0, y + 1, 6, 4), [target(f"count(up{{{SEL}}} == 1)")]),
        panel("stat", "Requests / s", (6, y + 1, 6, 4), [target(requests)], unit="reqps"),
        # `or vector(0)`: no 5xx series at all is a ratio of 0, not "no data".
        panel(
            "stat",
            "5xx ratio",
            (12, y + 1, 6, 4),
            [target(f"({errors} or vector(0)) / {requests}")],
            unit="percentunit",
        ),
        panel(
            "stat",
            "Images encoded / s",
            (18, y + 1, 6, 4),
            [target(f"sum(rate(clipserve_batch_size_sum{{{SEL}}}[{RATE}]))")],
        ),
    ]


def traffic(y: int) -> list[dict[str, Any]]:
    by_route = f"sum by (route) (rate(clipserve_requests_total{{{SEL}}}[{RATE}]))"
    by_code = f"sum by (code) (rate(clipserve_requests_total{{{SEL}}}[{RATE}]))"
    rejected = f"sum by (reason) (rate(clipserve_rejected_requests_total{{{SEL}}}[{RATE}]))"
    return [
        row("Traffic and latency", y),
        panel(
            "timeseries",
            "Throughput by route",
            (0, y + 1, 12, 8),
            [target(by_route, "{{route}}")],
            unit="reqps",
        ),
        panel(
            "timeseries",
            "Responses by status code",
            (12, y + 1, 12, 8),
            [target(by_code, "{{code}}")],
            unit="reqps",
        ),
        panel(
            "timeseries",
            "Latency p50 / p95 / p99 by route",
            (0, y + 9, 12, 8),
            quantiles("clipserve_request_duration_seconds", "route", "{{route}}"),
            unit="s",
        ),
        panel(
            "timeseries",
            "Rejected requests by reason",
            (12, y + 9, 12, 8),
            [target(rejected, "{{reason}}")],
            unit="reqps",
            description="queue_full and inflight_limit = 429, timeout = 504, not_ready = 503; "
            "the others are client errors.",
        ),
    ]


def pipeline(y: int) -> list[dict[str, Any]]:
    mean_batch = (
        f"sum by (lane) (rate(clipserve_batch_size_sum{{{SEL}}}[{RATE}]))"
        f" / sum by (lane) (rate(clipserve_batch_size_count{{{SEL}}}[{RATE}]))"
    )
    return [
        row("Pipeline", y),
        panel(
            "timeseries",
            "Stage durations (p50 / p95 / p99)",
            (0, y + 1, 12, 8),
            quantiles("clipserve_stage_duration_seconds", "stage", "{{stage}}"),
            unit="s",
            description="decode, text (label embeddings), queue (waiting for a batch), encode, score.",
        ),
        panel(
            "timeseries",
            "Batch size (images per encoder pass)",
            (12, y + 1, 12, 8),
            [
                target(mean_batch, "mean {{lane}}"),
                target(
                    "histogram_quantile(0.9, sum by (le, lane) "
                    f"(rate(clipserve_batch_size_bucket{{{SEL}}}[{RATE}])))",
                    "p90 {{lane}}",
                ),
            ],
        ),
        panel(
            "timeseries",
            "Queue depth (images) by replica and lane",
            (0, y + 9, 12, 8),
            [
                target(f"clipserve_queue_depth{{{SEL}}}", "{{instance}} {{lane}}"),
                target(f"max(clipserve_queue_capacity_images{{{SEL}}})", "capacity (429 above)"),
            ],
        ),
        panel(
            "timeseries",
            "In-flight /classify requests by replica",
            (12, y + 9, 12, 8),
            [target(f"clipserve_inflight_requests{{{SEL}}}", "{{instance}}")],
            description="The autoscaler's load signal (average per replica), with queued images.",
        ),
    ]


def models(y: int) -> list[dict[str, Any]]:
    hits = f"sum(rate(clipserve_text_cache_hits_total{{{SEL}}}[{RATE}]))"
    misses = f"sum(rate(clipserve_text_cache_misses_total{{{SEL}}}[{RATE}]))"
    versions = panel(
        "table",
        "Active versions (one row per replica and model)",
        (0, y + 9, 24, 8),
        [target(f"clipserve_model_info{{{SEL}}}", format="table", instant=True)],
        description="Every replica should show the same sha256 for a model; a rollout in progress shows two.",
        transformations=[
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True, "Value": True, "__name__": True, "job": True},
                    "indexByName": {"model": 0, "version": 1, "method": 2, "sha256": 3, "instance": 4},
                },
            }
        ],
    )
    return [
        row("Text cache and models", y),
        panel(
            "timeseries",
            "Text cache hit rate",
            (0, y + 1, 8, 8),
            [target(f"{hits} / ({hits} + {misses})", "hit rate")],
            unit="percentunit",
        ),
        panel(
            "timeseries",
            "Checkpoint loads and swaps by result",
            (8, y + 1, 8, 8),
            [
                target(
                    f"sum by (result) (increase(clipserve_checkpoint_loads_total{{{SEL}}}[5m]))",
                    "load {{result}}",
                ),
                target(
                    f"sum by (result) (increase(clipserve_checkpoint_swaps_total{{{SEL}}}[5m]))",
                    "swap {{result}}",
                ),
            ],
        ),
        panel(
            "timeseries",
            "Versions in memory by replica",
            (16, y + 1, 8, 8),
            [target(f"clipserve_model_versions_in_memory{{{SEL}}}", "{{instance}}")],
            description="Active versions plus replaced ones still finishing requests.",
        ),
        versions,
    ]


def gpu(y: int) -> list[dict[str, Any]]:
    series = [
        target(f"clipserve_gpu_memory_{kind}_bytes{{{SEL}}}", f"{kind} {{{{instance}}}} {{{{device}}}}")
        for kind in ("allocated", "reserved", "total")
    ]
    return [
        row("GPU and process", y),
        panel(
            "timeseries",
            "GPU memory",
            (0, y + 1, 16, 8),
            series,
            unit="bytes",
            description="From torch's allocator at scrape time; replicas on the CPU export no series.",
        ),
        panel(
            "timeseries",
            "Garbage-collection pauses",
            (16, y + 1, 8, 8),
            quantiles("clipserve_gc_pause_seconds", "generation", "gen {{generation}}")[2:],
            unit="s",
            description="p99 of Python's collection pauses per generation; every thread waits for "
            "one. Start-up objects are frozen out of full collections (service/heap.py).",
        ),
    ]


def variables() -> list[dict[str, Any]]:
    def query(name: str, expr: str, **kw: Any) -> dict[str, Any]:
        return {
            "name": name,
            "type": "query",
            "datasource": DS,
            "definition": expr,
            "query": {"query": expr, "refId": f"{name}-values"},
            "refresh": 2,
            "sort": 1,
            **kw,
        }

    return [
        {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"},
        query(
            "job",
            "label_values(clipserve_inflight_requests, job)",
            current={"text": "clipserve", "value": "clipserve"},
        ),
        query(
            "instance",
            'label_values(clipserve_inflight_requests{job="$job"}, instance)',
            includeAll=True,
            multi=True,
            allValue=".*",
            current={"text": "All", "value": "$__all"},
        ),
    ]


def build_dashboard() -> dict[str, Any]:
    panels = [*overview(0), *traffic(5), *pipeline(22), *models(39), *gpu(56)]
    for number, item in enumerate(panels, start=1):
        item["id"] = number
    return {
        "uid": "clipserve",
        "title": "clipserve",
        "description": "clipserve: traffic, latency, batching, queues, text cache, versions, GPU memory.",
        "tags": ["clipserve"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "annotations": {"list": []},
        "templating": {"list": variables()},
        "panels": panels,
    }
