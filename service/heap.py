"""The Python heap of a serving process: full collections that skip the start-up objects, and the
duration of every collection as a metric.

A serving process holds hundreds of thousands of objects that live as long as it does (torch,
open_clip, the models, the tokenizer), and every full (generation 2) collection walks all of them
while holding the GIL: the event loop, the lanes and the decode threads stop. On the 2-core
development machine (tiny model, one process, open-loop load at 750-920 req/s) those pauses took
236-302 ms, several a minute, each long enough to fill `max_inflight_requests` and answer a burst
with 429. `gc.freeze()` (Python docs, gc.freeze) moves every object alive at ready into a permanent
generation that collections skip; the same load then saw full collections of 0.6-1.8 ms, and in
10 minutes at 920 req/s the share of requests refused fell from 6.3% to 0.13%
(docs/RELIABILITY.md). Objects created later (a swapped-in version, the text
cache) are collected as usual; frozen ones are still freed by reference counting when released.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from typing import Any

from prometheus_client import Histogram


def freeze_startup_heap() -> int:
    """Collect what start-up left behind, then freeze the rest; returns the objects frozen."""
    gc.collect()  # first: garbage frozen now would never be collected
    gc.freeze()
    return gc.get_freeze_count()


class GcPauses:
    """Every collection's duration, recorded by a `gc.callbacks` hook and handed to a histogram by
    `flush`. The hook takes no lock: a collection can start inside any allocation, also one made
    while a metric's (non-reentrant) lock is held, so observing there could deadlock."""

    def __init__(self) -> None:
        self.started = 0.0
        self.pending: deque[tuple[int, float]] = deque(maxlen=100_000)  # (generation, seconds)

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.pending.append((info["generation"], time.perf_counter() - self.started))

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)

    def flush(self, histogram: Histogram) -> None:
        while self.pending:
            generation, seconds = self.pending.popleft()
            histogram.labels(generation=str(generation)).observe(seconds)
