"""Run one stage of the GPU check as a child process with a hard time limit.

Each stage is a bench script in its own process group: at its limit the whole group (the script,
the servers it started, its load-generator processes) gets SIGTERM, then SIGKILL, so a hung stage
costs its budget and no more, and nothing it started outlives it to skew the next stage.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

GRACE_S = 5.0  # after SIGTERM: servers drain, then SIGKILL


@dataclass(frozen=True)
class Finished:
    returncode: int | None  # None: stopped at its time limit
    seconds: float
    log_tail: str


def run_limited(argv: Sequence[str], log: Path, timeout_s: float, env: dict[str, str]) -> Finished:
    """Run `argv` with stdout and stderr into `log`; stop its process group after `timeout_s`."""
    started = time.monotonic()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            list(argv), stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            code: int | None = process.wait(timeout=max(timeout_s, 0.1))
        except subprocess.TimeoutExpired:
            code = None
        stop_group(process)
    return Finished(code, time.monotonic() - started, tail(log))


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group, SIGKILL what is left after a grace period. Also after a
    normal exit: a script that crashed may have left its server running in the group."""
    if not signal_group(process.pid, signal.SIGTERM):
        process.wait()
        return
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        process.poll()  # reap the leader, or its zombie keeps the group alive
        if not group_alive(process.pid):
            break
        time.sleep(0.1)
    else:
        signal_group(process.pid, signal.SIGKILL)
    process.wait()


def signal_group(pgid: int, number: int) -> bool:
    try:
        os.killpg(pgid, number)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def group_alive(pgid: int) -> bool:
    return signal_group(pgid, 0)


def tail(log: Path, lines: int = 30) -> str:
    """The last lines of a log, for the JSON (the whole log stays in the work folder)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])
