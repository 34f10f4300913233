"""Harness for `clipserve serve --workers N` as a real subprocess on loopback: start it, find its
worker processes, probe each of them (every probe is a new connection, so the kernel hands it to
whichever worker accepts first, and `X-Clipserve-Worker` says which one answered), load it with
clients that each keep one connection, stop it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.service.conftest import ADMIN_TOKEN, multipart

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 240.0  # two workers importing torch on a shared 2-core machine
WORKER = "x-clipserve-worker"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Service:
    folder: Path
    log_path: Path
    workers: int = 2
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "clipserve_cli", "serve", "--port", str(self.port),
            "--workers", str(self.workers), "--arch", "clipserve-tiny-vit", "--pretrained", "random",
            "--device", "cpu", "--checkpoint-dir", str(self.folder), "--max-wait-ms", "2",
            "--drain-grace-s", "0", "--watch-interval-s", "0.2", "--log-level", "warning",
        ]  # fmt: skip

    def start(self) -> Service:
        env = {**os.environ, "CLIPSERVE_ADMIN_TOKEN": ADMIN_TOKEN, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                self.command(), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.wait_for_workers(self.workers)
        return self

    def wait_for_workers(self, count: int, exclude: set[int] = frozenset()) -> set[int]:  # type: ignore[assignment]
        """Worker pids (not in `exclude`) once `count` of them answer readiness."""
        answered: set[int] = set()
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(answered - exclude) < count:
            assert self.process is not None and self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, f"{count} workers not ready:\n{self.log()}"
            try:
                response = httpx.get(self.url + "/health/ready", timeout=5)
                if response.status_code == 200:
                    answered.add(int(response.headers[WORKER]))
            except httpx.TransportError:
                time.sleep(0.2)
        return answered - exclude

    def worker_pids(self) -> set[int]:
        """The supervisor's worker processes (multiprocessing's resource tracker is not one)."""
        assert self.process is not None
        children = psutil.Process(self.process.pid).children()
        return {c.pid for c in children if "resource_tracker" not in " ".join(c.cmdline())}

    def stop(self, timeout_s: float = 60) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the service did not stop in {timeout_s} s:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def probe(url: str, path: str, admin: bool = False) -> tuple[int, httpx.Response]:
    """GET on a new connection: (the pid of the worker that answered, the answer); `admin`: with
    the admin token (e.g. for the state file's part of /v1/models)."""
    headers = {"Connection": "close"} | ({"Authorization": f"Bearer {ADMIN_TOKEN}"} if admin else {})
    response = httpx.get(url + path, timeout=10, headers=headers)
    return int(response.headers[WORKER]), response


def every_worker(
    url: str,
    pids: set[int],
    path: str,
    accept: Callable[[httpx.Response], bool],
    timeout_s: float,
    admin: bool = False,
) -> dict[int, httpx.Response]:
    """Probe until each worker in `pids` gave an answer `accept`s; each one's first such answer."""
    found: dict[int, httpx.Response] = {}
    deadline = time.monotonic() + timeout_s
    while set(found) != pids:
        assert time.monotonic() < deadline, f"not every worker within {timeout_s} s: {sorted(found)}"
        pid, response = probe(url, path, admin)
        if pid in pids and pid not in found and accept(response):
            found[pid] = response
    return found


def admin(url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    return httpx.request(method, url + "/admin" + path, headers=headers, timeout=60, **kwargs)


@dataclass
class Answer:
    client: int
    labels: tuple[str, ...]
    status: int  # 0: no answer (the connection failed)
    pid: int | None  # the worker that answered, or (no answer) the last one this client talked to
    body: dict[str, Any] = field(default_factory=dict)
    error: str = ""


async def keep_classifying(
    url: str,
    client: int,
    blob: bytes,
    labels: list[tuple[str, ...]],
    stop: asyncio.Event,
    out: list[Answer],
    reconnect_every: int = 0,
) -> None:
    """One client on one keep-alive connection, sending the next request when the last is answered;
    with `reconnect_every`, every so many requests end their connection (the next one opens a new
    connection, which may reach the other worker)."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    last_pid: int | None = None
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        turn = 0
        while not stop.is_set():
            chosen = labels[turn % len(labels)]
            turn += 1
            last = reconnect_every and turn % reconnect_every == 0
            headers = {"Connection": "close"} if last else None
            try:
                response = await http.post(
                    "/classify", **multipart([blob], chosen, model="pets"), headers=headers
                )
            except httpx.TransportError as error:
                out.append(Answer(client, chosen, 0, last_pid, error=repr(error)))
                continue
            last_pid = int(response.headers[WORKER])
            out.append(Answer(client, chosen, response.status_code, last_pid, response.json()))
