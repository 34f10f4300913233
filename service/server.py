"""uvicorn with clipserve's shutdown: SIGTERM drains, in every process that serves.

SIGTERM: readiness turns 503 at once, requests keep being served for drain_grace_s (balancers
move away), then the listener closes and in-flight requests get up to drain_timeout_s to finish
before the process exits 0. A second signal stops waiting. SIGINT (Ctrl-C) skips the grace period.
"""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

if TYPE_CHECKING:  # the supervisor imports this module without torch
    from service.runtime import State

log = logging.getLogger("clipserve")


def uvicorn_config(
    app: object, host: str, port: int, log_level: str, drain_timeout_s: float
) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,  # service.logs configured the handlers (text or JSON)
        access_log=False,  # replaced by clipserve.access, which carries the request id
        timeout_graceful_shutdown=int(drain_timeout_s),
    )


class DrainingServer(uvicorn.Server):
    """uvicorn, with readiness turned off for a grace period before the listener closes."""

    def __init__(self, config: uvicorn.Config, state: State) -> None:
        super().__init__(config)
        self.state = state
        self.drain_started: float | None = None
        self.exit_code = 0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_started is not None:  # a second signal: stop waiting
            self.should_exit = self.force_exit = True
            return
        self.drain_started = time.monotonic()
        self.state.draining = True
        log.info(
            "signal %s: draining (not ready; serving for %.1f s more)", sig, self.state.settings.drain_grace_s
        )
        if sig == signal.SIGINT:  # interactive Ctrl-C: no grace period
            self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self.state.error is not None and self.state.runtime is None:
            log.error("exiting: %s", self.state.error)
            self.exit_code = 1
            return True
        draining_for = None if self.drain_started is None else time.monotonic() - self.drain_started
        if draining_for is not None and draining_for >= self.state.settings.drain_grace_s:
            return True
        return await super().on_tick(counter)
