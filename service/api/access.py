"""X-Request-ID and the access log: every request gets an id (the client's X-Request-ID when it is a
sane token, else a new one), answered in the X-Request-ID header, set on every log record written
while serving it, and written with one access-log line per request (logger clipserve.access; the
path without the query string, which may hold labels; never a header, so never a key)."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.logs import request_id

HEADER = "x-request-id"
CLIENT_ID = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,128}$")  # longer or odder ids are replaced, not echoed
access_log = logging.getLogger("clipserve.access")


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(HEADER, "")
        rid = given if CLIENT_ID.match(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        started, status = time.monotonic(), 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (HEADER.encode(), rid.encode())],
                }
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            millis = 1000 * (time.monotonic() - started)
            client = (scope.get("client") or ("-", 0))[0]
            fields = {"method": scope["method"], "path": scope["path"], "status": status, "request_id": rid}
            access_log.info(
                '%s "%s %s" %d %.1f ms', client, scope["method"], scope["path"], status, millis,
                extra={**fields, "duration_ms": round(millis, 2), "client": client},
            )  # fmt: skip
            request_id.reset(token)
