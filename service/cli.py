"""`clipserve serve`: every Settings field as a flag (flag > env CLIPSERVE_* > default).

The admin token is read from the environment only (CLIPSERVE_ADMIN_TOKEN), never from a flag,
so it does not show up in `ps`. SIGTERM drains: readiness turns 503 at once, requests keep being
served for drain_grace_s (balancers move away), then the listener closes and in-flight requests
get up to drain_timeout_s to finish before the process exits 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn
from pydantic import ValidationError

from service.logs import configure_logging
from service.preflight import weights_problem
from service.settings import SECRET_FIELDS, Settings

if TYPE_CHECKING:
    from service.runtime import State

# The app (torch, open_clip) is imported only when `serve` runs, after the settings and the
# weights preflight: `clipserve serve --help` and a start-up that cannot succeed stay quick.
log = logging.getLogger("clipserve")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for name, field in Settings.model_fields.items():
        if name in SECRET_FIELDS:
            continue
        flag = "--" + name.replace("_", "-")
        help_text = f"{field.description} (default: {field.default}; env CLIPSERVE_{name.upper()})"
        if field.annotation is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
            )
        else:
            parser.add_argument(flag, default=argparse.SUPPRESS, metavar=name.upper(), help=help_text)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def run(args: argparse.Namespace) -> int:
    overrides = {key: value for key, value in vars(args).items() if key in Settings.model_fields}
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        print(f"clipserve serve: invalid settings\n{error}", file=sys.stderr)
        return 2
    configure_logging(args.log_level, settings.log_format)
    problem = weights_problem(settings)
    if problem is not None:
        print(f"clipserve serve: error: {problem}", file=sys.stderr)
        return 2
    from service.api.app import create_app

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        log_config=None,  # service.logs configured the handlers (text or JSON)
        access_log=False,  # replaced by clipserve.access, which carries the request id
        timeout_graceful_shutdown=int(settings.drain_timeout_s),
    )
    server = DrainingServer(config, app.state.clipserve)
    server.run()
    return server.exit_code


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
