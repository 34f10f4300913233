"""API keys on the inference routes, the metrics token, and what only the admin sees in /v1/models:
against a real server on loopback."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.auth import matches
from tests.service.conftest import (
    ADMIN_TOKEN,
    ServerThread,
    image_bytes,
    make_learner,
    multipart,
    running,
    server_settings,
    write_checkpoint,
)
from tests.service.test_ui import browser, by_id, needs_chromium, submit_and_wait, texts, type_into, wait_for

__all__ = ["browser"]  # the fixture, shared with the /ui test

KEY, FILE_KEY, METRICS_TOKEN = "key-from-env-1234", "key-from-file-5678", "metrics-token-9"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: object) -> Iterator[ServerThread]:
    folder = tmp_path_factory.mktemp("auth")
    write_checkpoint(folder / "pets.safetensors", make_learner(tiny_backbone, seed=1))  # type: ignore[arg-type]
    keys_file = folder / "keys.txt"
    keys_file.write_text(f"# one key per line\n{FILE_KEY}\n")
    settings = server_settings(
        folder,
        api_keys=f"{KEY}, other-key",
        api_keys_file=keys_file,
        metrics_token=METRICS_TOKEN,
    )
    with running(settings) as server:
        yield server


def classify(server: ServerThread, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(server.url + "/classify", headers=headers, **multipart([image_bytes(1)], ["a", "b"]))


def test_inference_routes_need_a_key_and_say_how_to_send_one(server: ServerThread) -> None:
    for response in (classify(server, {}), httpx.get(server.url + "/v1/models")):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        error = response.json()["error"]
        assert error["type"] == "unauthorized" and "X-API-Key" in error["message"]
    wrong = classify(server, {"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert classify(server, {"X-API-Key": "nope"}).status_code == 401


def test_keys_from_env_file_and_the_admin_token_are_accepted(server: ServerThread) -> None:
    for headers in (
        {"Authorization": f"Bearer {KEY}"},
        {"Authorization": "bearer other-key"},
        {"X-API-Key": FILE_KEY},
        {"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ):
        assert classify(server, headers).status_code == 200, headers


def test_health_docs_and_ui_are_open_and_metrics_has_its_own_token(server: ServerThread) -> None:
    for path in ("/health/live", "/health/ready", "/openapi.json", "/docs", "/ui/"):
        assert httpx.get(server.url + path).status_code == 200, path
    assert httpx.get(server.url + "/", follow_redirects=False).status_code == 307
    assert httpx.get(server.url + "/metrics").status_code == 401
    assert httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).status_code == 401
    scrape = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scrape.status_code == 200 and "clipserve_requests_total" in scrape.text


def test_the_keys_file_is_reread_when_it_changes(server: ServerThread) -> None:
    path = server.state.settings.api_keys_file
    assert path is not None
    path.write_text("rotated-key-42\n")
    time.sleep(1.1)  # re-read at most once a second
    assert classify(server, {"X-API-Key": "rotated-key-42"}).status_code == 200
    assert classify(server, {"X-API-Key": FILE_KEY}).status_code == 401
    assert classify(server, {"X-API-Key": KEY}).status_code == 200  # the environment's stay


def test_keys_are_never_logged(server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    classify(server, {"X-API-Key": KEY, "X-Request-ID": "keys-test"})
    classify(server, {"Authorization": "Bearer wrong-secret-value"})
    assert "keys-test" in caplog.text  # the access log was captured...
    assert KEY not in caplog.text and "wrong-secret-value" not in caplog.text  # ...without keys
    assert KEY not in repr(server.state.settings) and METRICS_TOKEN not in repr(server.state.settings)


def test_models_listing_shows_paths_and_settings_to_the_admin_only(server: ServerThread) -> None:
    public = httpx.get(server.url + "/v1/models", headers={"X-API-Key": KEY}).json()
    admin = httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    folder = str(server.state.settings.checkpoint_dir)
    assert folder not in str(public) and "settings" not in public and "refused_files" not in public
    assert all("source" not in item for item in public["data"])
    assert {item["name"] for item in public["data"]} == {"zeroshot", "pets"}
    assert folder in str(admin) and admin["settings"]["max_batch_size"] >= 1


def test_key_comparison_checks_every_key() -> None:
    import hashlib

    digests = [hashlib.sha256(k.encode()).digest() for k in ("a", "b", "c")]
    assert matches("c", digests) and not matches("d", digests) and not matches("", digests)
    assert not matches(None, digests)


def test_without_keys_everything_is_open(tmp_path: Path) -> None:
    with running(server_settings(warmup=False)) as server:
        assert classify(server, {}).status_code == 200
        assert httpx.get(server.url + "/metrics").status_code == 200
        listing = httpx.get(server.url + "/v1/models").json()
        assert "settings" not in listing  # no token sent: not the admin, keys or not


@needs_chromium
def test_the_ui_sends_the_api_key_it_is_given(server: ServerThread, browser: Any, tmp_path: Path) -> None:
    driver = browser
    driver.get(server.url + "/ui/")
    wait_for(driver, lambda: "401" in by_id(driver, "models-status").text)  # no key yet
    type_into(driver, "api-key", KEY)
    by_id(driver, "labels").click()  # leaving the field fires `change`: the models load with the key
    wait_for(driver, lambda: "pets" in texts(driver, "#models tbody th"))
    path = tmp_path / "noise.png"
    path.write_bytes(image_bytes(4))
    by_id(driver, "images").send_keys(str(path))
    submit_and_wait(driver, "results")
    assert texts(driver, ".result .bar-label")
