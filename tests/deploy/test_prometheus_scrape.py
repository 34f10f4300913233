"""A real Prometheus scrapes a real `clipserve serve` (tiny random model, settings from CLIPSERVE_*
variables as in the container), both on loopback, with deploy/prometheus/prometheus.yml (target
rewritten) and the alert rules. Through Prometheus's HTTP API: the clipserve_ series arrived, every
rule evaluates without error, and every dashboard and autoscaler query is valid PromQL that
returns data (GPU memory excepted: this service runs on the CPU). Once with one process, once with
`CLIPSERVE_WORKERS=2` (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from tests.deploy.conftest import (
    DASHBOARD_FILE,
    DEPLOY,
    RULES_FILE,
    exported_metric_names,
    promql_metric_names,
    require_tool,
)
from tests.deploy.test_dashboard import scaledobject_queries
from tests.service.conftest import image_bytes, multipart

pytestmark = pytest.mark.slow
START_TIMEOUT_S = 120.0
DATA_TIMEOUT_S = 60.0
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Running:
    url: str
    proc: subprocess.Popen[bytes]


def poll(check: Callable[[], T | None], timeout_s: float, what: str, running: Sequence[Running]) -> T:
    """Call `check` until it returns a value: at most `timeout_s`, and while the processes run."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for item in running:
            assert item.proc.poll() is None, f"{what}: {item.proc.args!r} exited with {item.proc.returncode}"
        try:
            value = check()
        except httpx.HTTPError:
            value = None
        if value is not None:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def start(command: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def clipserve(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Running]:
    """With 2 workers, each scrape reaches one of them and reports the totals of both."""
    port = free_port()
    env = {
        **os.environ,
        "CLIPSERVE_HOST": "127.0.0.1",
        "CLIPSERVE_PORT": str(port),
        "CLIPSERVE_ARCH": "clipserve-tiny-vit",
        "CLIPSERVE_PRETRAINED": "random",
        "CLIPSERVE_DEVICE": "cpu",
        "CLIPSERVE_CHECKPOINT_DIR": str(tmp_path),
        "CLIPSERVE_DRAIN_GRACE_S": "0",
        "CLIPSERVE_MAX_WAIT_MS": "2",
        "CLIPSERVE_WORKERS": str(request.param),
    }
    command = [sys.executable, "-m", "clipserve_cli", "serve", "--log-level", "warning"]
    running = Running(f"http://127.0.0.1:{port}", start(command, tmp_path / "clipserve.log", env))
    try:
        ready = lambda: httpx.get(f"{running.url}/health/ready").status_code == 200 or None  # noqa: E731
        poll(ready, START_TIMEOUT_S, "clipserve ready", [running])
        yield running
    finally:
        stop(running.proc)


@pytest.fixture
def prometheus(clipserve: Running, tmp_path: Path) -> Iterator[Running]:
    binary = require_tool("prometheus", "Debian: apt-get install prometheus")
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(RULES_FILE)]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["clipserve"]["static_configs"] = [{"targets": [clipserve.url.removeprefix("http://")]}]
    config["scrape_configs"] = [jobs["clipserve"]]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    command = [
        binary,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    running = Running(f"http://127.0.0.1:{port}", start(command, tmp_path / "prometheus.log"))
    try:
        ready = lambda: httpx.get(f"{running.url}/-/ready").status_code == 200 or None  # noqa: E731
        poll(ready, 30, "prometheus ready", [running])
        yield running
    finally:
        stop(running.proc)


def api(prometheus: Running, path: str, **params: str) -> Any:
    response = httpx.get(f"{prometheus.url}/api/v1/{path}", params=params, timeout=10)
    body = response.json()
    assert body["status"] == "success", (path, params, body)
    return body["data"]


def grafana_to_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables filled in as this test's set-up has them."""
    return expr.replace("$__rate_interval", "1m").replace("$job", "clipserve").replace("$instance", ".*")


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    return [grafana_to_promql(t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]


def send_traffic(clipserve: Running) -> None:
    with httpx.Client(base_url=clipserve.url, timeout=30) as client:
        for seed in range(3):
            response = client.post("/classify", **multipart([image_bytes(seed)], ["cat", "dog"]))
            assert response.status_code == 200, response.text
        unknown = client.post("/classify", **multipart([image_bytes(0)], ["cat"], model="nope"))
        assert unknown.status_code == 404


def test_prometheus_scrapes_clipserve_and_every_query_answers(
    clipserve: Running, prometheus: Running
) -> None:
    both = [clipserve, prometheus]

    def query(expr: str) -> list[Any]:
        return list(api(prometheus, "query", query=expr)["result"])

    def classify_series() -> bool | None:
        send_traffic(clipserve)  # and keep sending, so that rates over the window are not zero
        return True if query('clipserve_requests_total{route="/classify", code="200"}') else None

    poll(classify_series, DATA_TIMEOUT_S, "clipserve_requests_total in Prometheus", both)

    scraped = {name for name in api(prometheus, "label/__name__/values") if name.startswith("clipserve_")}
    wanted = set().union(*map(promql_metric_names, dashboard_queries()))
    # Everything the dashboard reads has arrived, except GPU memory (none on the CPU).
    assert {name for name in wanted if not name.startswith("clipserve_gpu_")} <= scraped
    assert scraped <= exported_metric_names()

    def without_data() -> list[str]:
        return [q for q in dashboard_queries() if "clipserve_gpu_" not in q and not query(q)]

    def every_query_has_data() -> bool | None:
        send_traffic(clipserve)
        return True if not without_data() else None

    try:
        poll(every_query_has_data, DATA_TIMEOUT_S, "dashboard queries answer", both)
    except AssertionError as error:
        raise AssertionError(f"{error}; without data: {without_data()}") from None
    for expr in [*dashboard_queries(), *scaledobject_queries()]:
        query(expr)  # valid PromQL for a real Prometheus (the GPU and KEDA ones return nothing here)

    def evaluated_rules() -> list[dict[str, Any]] | None:
        rules = [rule for group in api(prometheus, "rules")["groups"] for rule in group["rules"]]
        done = rules and all(not rule["lastEvaluation"].startswith("0001") for rule in rules)
        return rules if done else None

    rules = poll(evaluated_rules, DATA_TIMEOUT_S, "alert rules evaluated", both)
    assert len(rules) == sum(len(g["rules"]) for g in yaml.safe_load(RULES_FILE.read_text())["groups"])
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    assert [r["name"] for r in rules if r["state"] != "inactive"] == []  # a healthy service alerts nothing
