"""The Grafana dashboard, the alert rules and the autoscaler read only metrics the service
exports, and the generated files (dashboard JSON, PrometheusRule) are current."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import yaml

from tests.deploy.conftest import (
    DASHBOARD_FILE,
    DEPLOY,
    alert_rules,
    exported_metric_names,
    promql_metric_names,
)


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def scaledobject_queries() -> list[str]:
    scaled = yaml.safe_load((DEPLOY / "k8s/components/autoscaling/scaledobject.yaml").read_text())
    return [trigger["metadata"]["query"] for trigger in scaled["spec"]["triggers"]]


def unknown_names(exprs: list[str]) -> dict[str, set[str]]:
    exported = exported_metric_names()
    return {e: promql_metric_names(e) - exported for e in exprs if promql_metric_names(e) - exported}


def test_exported_names_include_the_sample_suffixes() -> None:
    names = exported_metric_names()
    assert {
        "clipserve_requests_total",
        "clipserve_request_duration_seconds_bucket",
        "clipserve_request_duration_seconds_sum",
        "clipserve_request_duration_seconds_count",
        "clipserve_model_info",
        "clipserve_queue_depth",
        "clipserve_gpu_memory_reserved_bytes",
    } <= names
    assert "clipserve_requests" not in names  # a counter is only ever exposed with _total
    assert unknown_names(["rate(clipserve_requests_totl[1m])", 'up{job="clipserve_x"}']) == {
        "rate(clipserve_requests_totl[1m])": {"clipserve_requests_totl"}
    }


def test_dashboard_reads_only_exported_metrics() -> None:
    exprs = dashboard_exprs()
    assert len(exprs) > 20
    assert unknown_names(exprs) == {}


def test_dashboard_has_the_panels_operators_need() -> None:
    used = set().union(*map(promql_metric_names, dashboard_exprs()))
    text = "\n".join(dashboard_exprs())
    assert "sum by (le, route) (rate(clipserve_request_duration_seconds_bucket" in text  # p50/95/99
    for quantile in ("histogram_quantile(0.5,", "histogram_quantile(0.95,", "histogram_quantile(0.99,"):
        assert quantile in text
    assert {
        "clipserve_requests_total",  # throughput
        "clipserve_stage_duration_seconds_bucket",  # stage durations
        "clipserve_batch_size_sum",  # batch size
        "clipserve_queue_depth",  # queue depth
        "clipserve_text_cache_hits_total",  # cache hit rate
        "clipserve_gpu_memory_allocated_bytes",  # GPU memory
        "clipserve_model_info",  # active versions
    } <= used


def test_alert_rules_and_autoscaler_read_only_exported_metrics() -> None:
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= {
        "ClipserveHighP99Latency",
        "ClipserveHigh5xxRatio",
        "ClipserveQueueSaturated",
        "ClipserveRejectingRequests",
        "ClipserveCheckpointSwapFailed",
    }
    assert unknown_names([rule["expr"] for rule in rules]) == {}
    assert unknown_names(scaledobject_queries()) == {}


def test_every_alert_has_a_runbook_section_in_operations_md() -> None:
    operations = (DEPLOY.parent / "docs" / "OPERATIONS.md").read_text()
    for rule in alert_rules():
        assert rule["annotations"]["runbook"] == f"docs/OPERATIONS.md#{rule['alert'].lower()}"
        assert f"### {rule['alert']}" in operations, rule["alert"]


def test_generated_files_are_current() -> None:
    spec = importlib.util.spec_from_file_location("deploy_generate", DEPLOY / "generate.py")
    assert spec is not None and spec.loader is not None
    generate: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    for path, text in generate.outputs().items():
        assert path.read_text() == text, f"{path} is stale: run python deploy/generate.py"
