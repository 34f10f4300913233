"""Health, end to end: live at once; ready only after models are loaded and warmed; a failed
start-up says why; SIGTERM turns readiness off, keeps serving for the grace period, lets every
in-flight request finish, then exits 0 (a real `clipserve serve` subprocess)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from models.backbone import Backbone
from tests.service.conftest import (
    image_bytes,
    make_learner,
    multipart,
    running,
    server_settings,
    wait_until,
    write_checkpoint,
)
from tests.service.learners import SlowLoading

REPO = Path(__file__).resolve().parents[2]


def test_ready_only_after_models_are_loaded_and_warmed(
    tmp_path: Path, tiny_backbone: Backbone, methods: Any
) -> None:
    methods(SlowLoading)
    write_checkpoint(tmp_path / "slow.safetensors", make_learner(tiny_backbone, seed=1, method=SlowLoading))
    blob = image_bytes(2)
    with (
        running(server_settings(tmp_path), wait_ready=False) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        assert client.get("/health/live").status_code == 200
        not_ready = client.get("/health/ready")
        refused = client.post("/classify", **multipart([blob], model="slow"))
        wait_until(lambda: client.get("/health/ready").status_code == 200, timeout_s=30)
        ready = client.get("/health/ready").json()
        served = client.post("/classify", **multipart([blob], model="slow"))

    assert not_ready.status_code == 503 and not_ready.json()["error"]["message"] == "loading"
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert ready["models"] == ["slow", "zeroshot"]
    assert served.status_code == 200 and served.json()["model"]["name"] == "slow"


def test_failed_start_up_stays_not_ready_and_says_why(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, pretrained=str(tmp_path / "missing-weights.pt"))
    with running(settings, wait_ready=False) as server, httpx.Client(base_url=server.url) as client:
        wait_until(lambda: server.state.error is not None, timeout_s=30)
        ready = client.get("/health/ready")
        assert client.get("/health/live").status_code == 200
    assert ready.status_code == 503
    message = ready.json()["error"]["message"]
    assert "weights not found" in message and "local weights file" in message


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drains_in_flight_requests_then_exits(tmp_path: Path, workers: int) -> None:
    """With 2 workers the 8 requests are spread over both (SO_REUSEPORT), and every worker drains."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Batches wait up to 2.5 s to fill, so requests are still in flight when the listener closes
    # at the end of the 1 s grace period.
    command = [
        sys.executable, "-m", "clipserve_cli", "serve", "--port", str(port),
        "--arch", "clipserve-tiny-vit", "--pretrained", "random", "--device", "cpu",
        "--max-batch-size", "64", "--max-wait-ms", "2500", "--drain-grace-s", "1",
        "--workers", str(workers),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        ready_workers: set[str] = set()
        wait_until(
            lambda: len(_ready(url, ready_workers)) == workers or process.poll() is not None,
            timeout_s=180,
            interval_s=0.1,
        )
        assert process.poll() is None, (tmp_path / "server.log").read_text()
        answers, during_grace, ready_after_signal = asyncio.run(_drain_scenario(url, process))
        exit_code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    output = (tmp_path / "server.log").read_text()
    assert ready_after_signal == 503, output
    assert [a.status_code for a in answers] == [200] * 8, output
    assert during_grace.status_code == 200
    assert exit_code == 0, output
    assert "Traceback" not in output, output


def _ready(url: str, workers: set[str]) -> set[str]:
    """The worker processes seen ready so far (each probe is a new connection)."""
    try:
        response = httpx.get(url + "/health/ready", timeout=1)
    except httpx.TransportError:
        return workers
    if response.status_code == 200:
        workers.add(response.headers["x-clipserve-worker"])
    return workers


async def _readiness_after_signal(url: str) -> int:
    """Readiness as a balancer's probes see it (a new connection each) within the 1 s grace period:
    503 once the signal has reached the process (with --workers, every worker)."""
    status = 0
    for _ in range(30):
        async with httpx.AsyncClient(base_url=url, timeout=5) as probe:
            status = (await probe.get("/health/ready")).status_code
        if status == 503:
            return status
        await asyncio.sleep(0.02)
    return status


async def _drain_scenario(
    url: str, process: subprocess.Popen
) -> tuple[list[httpx.Response], httpx.Response, int]:
    blob = image_bytes(3)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        in_flight = [
            asyncio.create_task(client.post("/classify", **multipart([blob], ["a", "b"]))) for _ in range(8)
        ]
        for _ in range(300):  # until all 8 wait in the batcher's queue
            if 'clipserve_queue_depth{lane="shared"} 8.0' in (await client.get("/metrics")).text:
                break
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        ready = await _readiness_after_signal(url)
        async with httpx.AsyncClient(base_url=url, timeout=5) as fresh:  # a new connection
            during_grace = await fresh.post("/classify", **multipart([blob], ["a", "b"]))
        started = time.monotonic()
        answers = await asyncio.gather(*in_flight)
        assert time.monotonic() - started < 10
    return list(answers), during_grace, ready
