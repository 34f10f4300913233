"""This process's CPU time, resident memory, open files and garbage-collection pauses, into Metrics
(stdlib only; Linux /proc for memory and open files, which are left unset where /proc is absent)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from service.heap import GcPauses
from service.metrics import Metrics

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
PROC_SELF = Path("/proc/self")


class ProcessStats:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.cpu_counted = 0.0
        self.gc_pauses = GcPauses()  # installed while the app runs (service.api.app's lifespan)

    def update(self) -> None:
        self.gc_pauses.flush(self.metrics.gc_pause)
        times = os.times()
        cpu = times.user + times.system
        self.metrics.process_cpu.inc(max(0.0, cpu - self.cpu_counted))  # a counter: add what is new
        self.cpu_counted = max(cpu, self.cpu_counted)
        try:
            resident_pages = int((PROC_SELF / "statm").read_text().split()[1])
            self.metrics.process_memory.set(resident_pages * PAGE_SIZE)
            self.metrics.process_open_fds.set(sum(1 for _ in (PROC_SELF / "fd").iterdir()))
        except (OSError, IndexError, ValueError):
            pass

    async def run(self, interval_s: float) -> None:
        """Update every interval_s: with several workers, the one answering a scrape is not the
        only one whose values must be fresh."""
        while True:
            self.update()
            await asyncio.sleep(interval_s)
