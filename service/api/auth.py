"""API keys for the inference routes, the /metrics token, and who counts as admin.

Default-deny: with keys configured (CLIPSERVE_API_KEYS and/or api_keys_file), every route needs a
key except the public ones below; a route added later is protected without anyone remembering to.
Public: liveness and readiness, the docs and OpenAPI schema, the /ui page's static files (the page
sends the key on its API calls), and GET / (a redirect). /admin has its own bearer token (the admin
token also works as an API key and a metrics token). /metrics needs CLIPSERVE_METRICS_TOKEN when
that is set, and is open otherwise, whatever the API keys.

A key is sent as `Authorization: Bearer <key>` (what OpenAI and Hugging Face clients send) or as
`X-API-Key: <key>`. Keys are compared in constant time (digests, every key compared), and
neither keys nor the headers that carry them are ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Iterable
from pathlib import Path

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.error_shape import error_body
from service.api.json_response import ORJSONResponse
from service.errors import Unauthorized
from service.settings import Settings

log = logging.getLogger("clipserve")
# Health of the Open Inference Protocol (/v2/health/*) is health too: probes carry no keys.
PUBLIC_PATHS = frozenset(
    {
        "/health/live",
        "/health/ready",
        "/v2/health/live",
        "/v2/health/ready",
        "/openapi.json",
        "/docs",
        "/redoc",
    }
)
PUBLIC_PREFIXES = ("/ui", "/docs/", "/admin/")  # /admin: require_admin checks its own token
METRICS_PATH = "/metrics"
RELOAD_EVERY_S = 1.0
KEY_HINT = "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def matches(given: str | None, digests: Iterable[bytes]) -> bool:
    """Constant time in the key: equal-length digests, and every digest compared."""
    if not given:
        return False
    probe, found = _digest(given), False
    for digest in digests:
        found |= hmac.compare_digest(probe, digest)
    return found


def presented_key(headers: Headers) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get("x-api-key") or None


def is_admin(headers: Headers, settings: Settings) -> bool:
    """The request carries the admin bearer token (admin routes enabled)."""
    if settings.admin_token is None:
        return False
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and matches(
        value.strip(), [_digest(settings.admin_token.get_secret_value())]
    )


class ApiKeys:
    """The accepted keys: the environment's, plus the file's, re-read when the file changes."""

    def __init__(self, settings: Settings) -> None:
        self.from_env = _split(settings.api_keys.get_secret_value() if settings.api_keys else "")
        self.file = settings.api_keys_file
        self.file_keys: list[bytes] = []
        self.file_stamp: tuple[float, int] | None = None
        self.checked_at = 0.0
        self._reload(time.monotonic())

    @property
    def enabled(self) -> bool:
        return bool(self.from_env) or self.file is not None

    def digests(self) -> list[bytes]:
        now = time.monotonic()
        if self.file is not None and now - self.checked_at >= RELOAD_EVERY_S:
            self._reload(now)
        return [*self.from_env, *self.file_keys]

    def _reload(self, now: float) -> None:
        self.checked_at = now
        if self.file is None:
            return
        try:
            stat = self.file.stat()
            stamp = (stat.st_mtime, stat.st_size)
            if stamp != self.file_stamp:
                self.file_keys, self.file_stamp = _read_keys(self.file), stamp
                log.info("API keys: %d read from %s", len(self.file_keys), self.file)
        except OSError as error:  # keep the keys we had; an unreadable file never opens the door
            log.error("API keys file %s unreadable (%s); keeping the %d keys read before",
                      self.file, error.strerror, len(self.file_keys))  # fmt: skip


def _split(text: str) -> list[bytes]:
    return [_digest(key) for key in text.replace(",", " ").split()]


def _read_keys(path: Path) -> list[bytes]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [_digest(line) for line in lines if line]


class RequireKeys:
    """ASGI middleware: answers 401 (with WWW-Authenticate) before routing, admission or the body."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings, self.keys = app, settings, ApiKeys(settings)
        admin = settings.admin_token.get_secret_value() if settings.admin_token else None
        self.admin = [_digest(admin)] if admin else []
        metrics = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        self.metrics = [_digest(metrics), *self.admin] if metrics else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        body = error_body(scope["path"], refusal.status, refusal.type, refusal.message)  # /v2: its shape
        await ORJSONResponse(body, refusal.status, refusal.headers)(scope, receive, send)

    def refusal(self, scope: Scope) -> Unauthorized | None:
        path = scope["path"][len(scope.get("root_path", "")) :] or "/"
        if (
            path in PUBLIC_PATHS
            or path.startswith(PUBLIC_PREFIXES)
            or (path == "/" and scope["method"] == "GET")
        ):
            return None
        if path == METRICS_PATH:
            return self._check(
                scope, self.metrics, "/metrics needs the metrics token: 'Authorization: Bearer <token>'"
            )
        if not self.keys.enabled:
            return None
        return self._check(
            scope, [*self.keys.digests(), *self.admin], f"this route needs an API key; {KEY_HINT}"
        )

    @staticmethod
    def _check(scope: Scope, digests: list[bytes] | None, missing: str) -> Unauthorized | None:
        if digests is None:
            return None
        given = presented_key(Headers(scope=scope))
        if given is None:
            return Unauthorized(missing, 'Bearer realm="clipserve"')
        if not matches(given, digests):
            return Unauthorized("invalid API key or token", 'Bearer realm="clipserve", error="invalid_token"')
        return None
