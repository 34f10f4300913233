"""Errors the service answers with: each carries its HTTP status and a machine-readable type.

Every error response has the same JSON shape: {"error": {"code", "type", "message"}}.
"""

from __future__ import annotations


class ServiceError(Exception):
    status: int = 500
    type: str = "internal"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, dict[str, object]]:
        return {"error": {"code": self.status, "type": self.type, "message": self.message}}


class BadInput(ServiceError):
    status, type = 400, "bad_input"


class CorruptImage(ServiceError):
    status, type = 400, "corrupt_image"


class Unauthorized(ServiceError):
    status, type = 401, "unauthorized"

    def __init__(self, message: str, challenge: str = "Bearer") -> None:
        super().__init__(message, headers={"WWW-Authenticate": challenge})


class Forbidden(ServiceError):
    status, type = 403, "forbidden"


class NotFound(ServiceError):
    status, type = 404, "not_found"


class Conflict(ServiceError):
    """An incompatible checkpoint (other backbone, format, method) or a conflicting admin action."""

    status, type = 409, "conflict"


class TooLarge(ServiceError):
    """A size limit was exceeded; the message names the setting."""

    status, type = 413, "too_large"


class UnsupportedMedia(ServiceError):
    status, type = 415, "unsupported_media_type"


class Invalid(ServiceError):
    """Well-formed but unacceptable input (counts, lengths, unknown templates); names the limit."""

    status, type = 422, "invalid"


class Overloaded(ServiceError):
    status, type = 429, "overloaded"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after_s))})


class NotReady(ServiceError):
    status, type = 503, "not_ready"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class DeadlineExceeded(ServiceError):
    status, type = 504, "timeout"


class UrlRefused(ServiceError):
    """An image URL that the image_url_allow policy refuses; the message names the rule."""

    status, type = 403, "url_refused"


class UrlFetchFailed(ServiceError):
    """An allowed image URL that could not be fetched (no answer, a timeout, an HTTP error)."""

    status, type = 422, "url_fetch_failed"
