"""`clipserve serve`: every Settings field as a flag (flag > env CLIPSERVE_* > default).

The admin token is read from the environment only (CLIPSERVE_ADMIN_TOKEN), never from a flag,
so it does not show up in `ps`. One process serves by default; `--workers N` runs N worker
processes on the same port under a supervisor (service/supervisor.py). Either way SIGTERM drains
(service/server.py): readiness turns 503 at once, requests keep being served for drain_grace_s,
then the listener closes and in-flight requests get up to drain_timeout_s before exit 0.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError

from service.logs import configure_logging
from service.preflight import weights_problem
from service.settings import SECRET_FIELDS, Settings

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
    if settings.workers > 1:
        from service.supervisor import serve_workers

        return serve_workers(settings, args.log_level)
    from service.api.app import create_app
    from service.server import DrainingServer, uvicorn_config

    app = create_app(settings)
    config = uvicorn_config(app, settings.host, settings.port, args.log_level, settings.drain_timeout_s)
    server = DrainingServer(config, app.state.clipserve)
    server.run()
    return server.exit_code
