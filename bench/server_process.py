"""A server under test as a child process on loopback: started, awaited until ready, measured, stopped.

Shared by the benchmarks that drive real HTTP servers (reliability, end to end, first request):
they start `clipserve serve` (or the hand-written baseline) the way a user would, on a free port,
and never reuse a server another script started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clipserve_command(port: int, *flags: str) -> list[str]:
    """`clipserve serve` on 127.0.0.1:port with these extra flags, started as this interpreter running
    the repository's clipserve_cli.py: no console script needed (the GPU machine runs the source tree
    with its own python3, nothing installed), and the server runs this checkout's code."""
    cli = str(ROOT / "clipserve_cli.py")
    return [sys.executable, cli, "serve", "--host", "127.0.0.1", "--port", str(port), *flags]


@dataclass
class ServerProcess:
    """`command` must listen on 127.0.0.1:`port` and answer 200 on `ready_path` once it can serve."""

    command: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/health/ready"
    start_timeout_s: float = 180.0
    process: subprocess.Popen[bytes] | None = None
    # stderr goes to a file, not a pipe: a pipe nobody reads fills up and blocks the server's logging
    log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def start(self) -> ServerProcess:
        self.log = tempfile.NamedTemporaryFile(prefix="clipserve-bench-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command, env={**os.environ, **self.env}, stdout=subprocess.DEVNULL, stderr=self.log
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"{self.command[0]} exited with {code}:\n{self.stderr()}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not become ready in {self.start_timeout_s:.0f} s: {self.command}")

    def stderr(self) -> str:
        """What the server wrote to stderr so far (its log)."""
        return Path(self.log.name).read_text(errors="replace") if self.log is not None else ""

    def rss(self) -> int:
        """Resident memory of the server process, bytes."""
        return int(psutil.Process(self.pid).memory_info().rss)

    def signal(self, number: int) -> None:
        assert self.process is not None, "not started"
        self.process.send_signal(number)

    def wait(self, timeout_s: float) -> int | None:
        """The exit code once the process ends by itself, or None if it is still running."""
        assert self.process is not None, "not started"
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, wait; SIGKILL past the timeout (exit code -9). Returns the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        return code

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
