"""Write the deploy files that are derived from others, or check that they are current (--check).

- deploy/k8s/components/monitoring/prometheusrule.yaml: the alert rules of
  deploy/prometheus/rules/clipserve.rules.yml as a Prometheus Operator PrometheusRule (one source
  of truth for compose and Kubernetes);
- deploy/grafana/dashboards/clipserve.json: the Grafana dashboard of deploy/grafana/dashboard.py.

Run with the project's interpreter: .venv/bin/python deploy/generate.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent
sys.path.insert(0, str(DEPLOY / "grafana"))

from dashboard import build_dashboard  # noqa: E402

RULES = DEPLOY / "prometheus" / "rules" / "clipserve.rules.yml"
PROMETHEUS_RULE = DEPLOY / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "clipserve.json"


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (PromQL) as literal blocks, as in the rules file."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def prometheus_rule() -> str:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    resource: dict[str, Any] = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "clipserve"},
        "spec": {"groups": groups},
    }
    header = f"# GENERATED from deploy/prometheus/rules/{RULES.name} by deploy/generate.py; edit that file.\n"
    return header + yaml.dump(resource, Dumper=_BlockDumper, sort_keys=False, width=110)


def dashboard() -> str:
    return json.dumps(build_dashboard(), indent=2) + "\n"


def outputs() -> dict[Path, str]:
    return {PROMETHEUS_RULE: prometheus_rule(), DASHBOARD: dashboard()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if a generated file is not current")
    args = parser.parse_args()
    stale = []
    for path, text in outputs().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path.relative_to(DEPLOY.parent))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(DEPLOY.parent)}")
    if stale:
        print(f"not current: {', '.join(map(str, stale))}; run: python deploy/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
