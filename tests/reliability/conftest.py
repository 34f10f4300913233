"""Helpers for the reliability suite: error-shape and leak checks over every error body."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx

# What an error body must never carry: a stack trace, or a path of this machine's file system.
LEAK_MARKERS = ("Traceback", 'File "', "site-packages", str(Path.cwd()), sys.prefix)
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:tmp|home|work|usr|opt|var|root|etc|proc)/")


def leaks(text: str, *private: str) -> list[str]:
    found = [marker for marker in (*LEAK_MARKERS, *private) if marker and marker in text]
    return found + ABSOLUTE_PATH.findall(text)


def assert_clean_error(response: httpx.Response, *private: str) -> str:
    """A 4xx with the service's JSON error shape (under /v2 the Open Inference Protocol's,
    {"error": "<message>"}), a message, and nothing private in it."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    body = response.json()
    assert set(body) == {"error"}, body
    if response.request.url.path.startswith("/v2"):
        message = body["error"]
    else:
        message = body["error"]["message"]
        assert body["error"]["code"] == response.status_code, body
    assert isinstance(message, str) and message.strip(), body
    assert not leaks(response.text, *private), (leaks(response.text, *private), response.text[:500])
    return message
