"""Shared by the bench scripts: where a run happened, and rewriting a script's own section of a doc.

Each script owns the text between `<!-- bench:<key>:start -->` and `<!-- bench:<key>:end -->` in a
docs/ page, so reruns replace their figures in place and never touch anything else.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

DOC_HEADER = """# Performance

Every figure on this page is written by a script in `bench/`; each script owns the section
between its `<!-- bench:... -->` markers and replaces it when rerun, so edit the scripts, not the
figures. Each section records the exact command, the machine, the software versions and the date.
Figures from the 2-core development machines are CPU figures; GPU figures come from the H200
sessions and say so. The development machines are shared, so CPU figures are noisy: each section
gives the load average at the start of its run, and the minimum next to the median.
"""


def command_line() -> str:
    """The command as it was run, re-runnable from the repository root."""
    return shlex.join(["python", *sys.argv])


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU: {cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def today_utc() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def replace_section(path: Path, key: str, body: str) -> None:
    """Write `body` between this key's markers in `path`, appending the section if it is new."""
    start, end = f"<!-- bench:{key}:start -->", f"<!-- bench:{key}:end -->"
    section = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else DOC_HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), flags=re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def time_calls(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> list[float]:
    """Seconds per call after `warmup` untimed calls, synchronising a CUDA device around each call."""
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds
