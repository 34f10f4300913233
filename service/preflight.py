"""Checks that run before the app (and torch) is imported, so a start-up that cannot succeed fails
in about a second with a message that says what to do, instead of after the imports and the Hugging
Face hub's download retries (about 48 s without network).

Only the standard library here: this module is imported by `clipserve serve` before anything heavy.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

from service.settings import Settings

log = logging.getLogger("clipserve")
HUB_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 1.0
OFFLINE_VALUES = {"1", "ON", "YES", "TRUE"}


def weights_problem(settings: Settings, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the backbone weights cannot be had, or None when they may be.

    A tag (not a file, not 'random') needs the hub unless its weights are cached. When the hub
    cannot be reached within `timeout_s`: with an empty hub cache, fail now; otherwise switch the
    hub client offline (HF_HUB_OFFLINE=1), so loading answers from the cache or fails at once.
    """
    if settings.random_weights or Path(settings.pretrained).is_file() or hub_offline():
        return None
    endpoint = hub_endpoint()
    if reachable(endpoint, timeout_s):
        return None
    if any(hub_cache().glob("models--*")):
        log.warning("%s cannot be reached: loading weights from the local hub cache only", endpoint)
        os.environ["HF_HUB_OFFLINE"] = "1"
        return None
    return (
        f"cannot download the weights of {settings.arch!r}/{settings.pretrained!r}: {endpoint} cannot be "
        f"reached (no network?) and the Hugging Face cache ({hub_cache()}) is empty. To try clipserve "
        f"without downloads, run `make serve` (the bundled demo model); to serve other weights, pass a "
        f"local weights file: `clipserve serve --arch {settings.arch} --pretrained FILE`."
    )


def hub_offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in OFFLINE_VALUES


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or HUB_ENDPOINT


def hub_cache() -> Path:
    """Where huggingface_hub keeps downloads (its own precedence: HF_HUB_CACHE, HF_HOME, XDG)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    home = os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface")
    return Path(home) / "hub"


def reachable(url: str, timeout_s: float) -> bool:
    """A TCP connection to the URL's host (or the HTTPS proxy, when one is set) within timeout_s.

    Name resolution cannot be given a timeout, so the probe runs on a daemon thread that is left
    behind if it takes too long."""
    target = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or url
    parts = urlsplit(target if "://" in target else f"http://{target}")
    if parts.hostname is None:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(result and result[0])
