"""/docs and /redoc without internet: the pages load Swagger UI / ReDoc from the service itself
(package files of fastapi-offline), and a real headless Chromium lists the operations. The browser
harness is tests/service/test_ui.py's (Debian's chromium; skipped where it is absent)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.api.routes.docs import ASSET_DIR, ASSETS
from tests.service.conftest import ServerThread, running, server_settings
from tests.service.test_ui import browser, needs_chromium, wait_for

__all__ = ["browser"]  # the fixture, shared with the /ui test


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with running(server_settings(warmup=False)) as server:
        yield server


def test_docs_pages_reference_only_the_service(server: ServerThread) -> None:
    for page in ("/docs", "/redoc"):
        response = httpx.get(server.url + page)
        assert (
            response.status_code == 200
            and "default-src 'self'" in response.headers["content-security-policy"]
        )
        assert "cdn" not in response.text.lower() and "https://" not in response.text, page
    for name in ASSETS:
        asset = httpx.get(server.url + f"/docs/assets/{name}")
        assert asset.status_code == 200 and asset.content == (ASSET_DIR / name).read_bytes()
    assert httpx.get(server.url + "/docs/assets/../../etc/passwd").status_code == 404


@needs_chromium
def test_swagger_ui_lists_the_operations_in_chromium(server: ServerThread, browser: Any) -> None:
    browser.get(server.url + "/docs")
    wait_for(browser, lambda: browser.find_elements("css selector", ".opblock-summary-path"))
    shown = {
        (block.get_attribute("class").split("opblock-")[-1].split()[0], path.text.replace("\u200b", ""))
        for block in browser.find_elements("css selector", ".opblock")
        for path in block.find_elements("css selector", ".opblock-summary-path")
    }
    paths = {path for _, path in shown}
    assert {"/classify", "/v1/models", "/admin/models", "/health/ready", "/metrics"} <= paths, shown
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(url.startswith(server.url) for url in resources), resources


@needs_chromium
def test_redoc_renders_the_operations_in_chromium(server: ServerThread, browser: Any) -> None:
    browser.get(server.url + "/redoc")
    wait_for(browser, lambda: "/classify" in browser.find_element("tag name", "body").text)
    assert "Classify images against labels" in browser.find_element("tag name", "body").text
