"""The /ui playground in a real headless Chromium (Debian's chromium + chromedriver, Selenium).

One browser and one server (tiny random model, a CoOp checkpoint in the watched folder) for the
module. The page is driven as a user would: pick a file, type labels, press the button; the chart's
top label must be the one the API answers for the same request. Screenshots go to
$CLIPSERVE_TEST_ARTIFACTS (or pytest's tmp dir). Skipped where chromium or chromedriver is absent.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.routes.ui import UI_DIR
from tests.service.conftest import (
    ADMIN_TOKEN,
    CLASSES,
    ServerThread,
    image_bytes,
    make_learner,
    multipart,
    running,
    server_settings,
    wait_until,
    write_checkpoint,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1400",
)
WAIT_S = 20.0

needs_chromium = pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
    reason=f"needs {CHROMIUM} and {CHROMEDRIVER} (Debian's chromium, chromium-driver; .ci/install-chromium)",
)


def test_ui_page_is_served_with_its_assets_and_no_outside_urls() -> None:
    """Cheap checks without a browser: /ui redirects to /ui/, assets are package files."""
    from fastapi.testclient import TestClient

    from service.api.app import create_app

    with TestClient(create_app(server_settings(warmup=False))) as client:
        redirect = client.get("/ui", follow_redirects=False)
        assert redirect.status_code == 307 and redirect.headers["location"] == "ui/"
        page = client.get("/ui/")
        assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
        for asset in ("app.js", "style.css"):
            assert client.get(f"/ui/{asset}").text == (UI_DIR / asset).read_text()
        assert client.get("/ui/secret.py").status_code == 404
    for name in ("index.html", "app.js", "style.css"):
        assert "http://" not in (UI_DIR / name).read_text().replace("http://127.0.0.1", "")
        assert "https://" not in (UI_DIR / name).read_text()


# -- the browser --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: Any) -> Iterator[ServerThread]:
    folder = tmp_path_factory.mktemp("checkpoints")
    write_checkpoint(folder / "pets.safetensors", make_learner(tiny_backbone, seed=1))
    with running(server_settings(folder)) as server:
        wait_until(lambda: "pets" in server.registry.active, 30)
        yield server


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never reach the network
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CLIPSERVE_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_for(driver: Any, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(lambda _: condition())


def by_id(driver: Any, name: str) -> Any:
    return driver.find_element("id", name)


def texts(driver: Any, css: str) -> list[str]:
    return [node.text for node in driver.find_elements("css selector", css)]


def type_into(driver: Any, name: str, text: str) -> None:
    field = by_id(driver, name)
    field.clear()
    field.send_keys(text)


def submit_and_wait(driver: Any, outcome: str) -> None:
    """Press Classify; wait for fresh results ('results') or the error box ('error')."""
    driver.execute_script("document.getElementById('results').replaceChildren()")
    by_id(driver, "submit").click()
    if outcome == "results":
        wait_for(driver, lambda: texts(driver, ".result .bar-label"))
    else:
        wait_for(driver, lambda: by_id(driver, "error").is_displayed() and by_id(driver, "error").text)


def api_top_label(server: ServerThread, image: bytes, labels: list[str], **fields: Any) -> dict[str, Any]:
    response = httpx.post(server.url + "/classify", **multipart([image], labels, top_k=5, **fields))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@needs_chromium
def test_playground_in_chromium(server: ServerThread, browser: Any, tmp_path: Path, artifacts: Path) -> None:
    driver = browser
    driver.get(server.url + "/ui")
    assert driver.current_url == server.url + "/ui/"
    wait_for(driver, lambda: "pets" in texts(driver, "#models tbody th"))
    row = driver.find_element("css selector", "#models tr[data-model='pets']").text
    assert "coop" in row.lower() and str(len(CLASSES)) in row.split()

    images = [image_bytes(seed) for seed in (3, 4)]
    paths = []
    for i, blob in enumerate(images):
        (tmp_path / f"noise-{i}.png").write_bytes(blob)
        paths.append(str(tmp_path / f"noise-{i}.png"))
    by_id(driver, "images").send_keys("\n".join(paths))
    assert by_id(driver, "images-status").text == "2 images chosen."
    unlabelled = driver.execute_script(
        "return [...document.querySelectorAll('input, select, textarea')]"
        ".filter(e => e.labels.length === 0).map(e => e.id)"
    )
    assert unlabelled == []

    # A bad request: the API's 422 message is shown as text, not a stack trace or nothing.
    labels = ["a red car", "a cat", "a dog", "the sea"]
    type_into(driver, "labels", "\n".join(labels[:2]) + "\n" + ", ".join(labels[2:]))
    type_into(driver, "templates", "no placeholder here")
    submit_and_wait(driver, "error")
    error = by_id(driver, "error").text
    assert error.startswith("HTTP 422:") and "must contain '{}' exactly once" in error, error
    assert driver.save_screenshot(str(artifacts / "ui-error.png"))

    # The same form with a template: the chart's top label is the API's for the same request.
    type_into(driver, "templates", "a blurry photo of {}.")
    submit_and_wait(driver, "results")
    assert not by_id(driver, "error").is_displayed()
    cards = driver.find_elements("css selector", ".result")
    assert len(cards) == 2
    for card, image in zip(cards, images, strict=True):
        expected = api_top_label(server, image, labels, templates="a blurry photo of {}.")
        shown = [node.text for node in card.find_elements("css selector", ".bar-label")]
        assert shown[0] == expected["results"][0]["predictions"][0]["label"]
        assert sorted(shown) == sorted(labels)
    assert by_id(driver, "answered-by").text == "zeroshot v1"
    assert "round trip" in by_id(driver, "result-meta").text
    assert driver.save_screenshot(str(artifacts / "ui-playground.png"))
    if os.environ.get("CLIPSERVE_UPDATE_SCREENSHOT"):  # refreshes the README's picture
        shutil.copy(artifacts / "ui-playground.png", Path(__file__).parents[2] / "docs" / "ui-screenshot.png")


@needs_chromium
def test_thousand_labels_model_classes_and_admin_default(
    server: ServerThread, browser: Any, tmp_path: Path, artifacts: Path
) -> None:
    from selenium.webdriver.common.keys import Keys

    driver = browser
    driver.get(server.url + "/ui/")
    wait_for(driver, lambda: "pets" in texts(driver, "#models tbody th"))
    path = tmp_path / "noise.png"
    path.write_bytes(image_bytes(5))
    by_id(driver, "images").send_keys(str(path))

    # 1,000 labels: pasted at once (as a paste would), top-k bars only.
    driver.execute_script(
        "const t = document.getElementById('labels'); t.value = arguments[0];"
        "t.dispatchEvent(new Event('input'));",
        "\n".join(f"class {i}" for i in range(1000)),
    )
    assert by_id(driver, "labels-status").text == "1000 labels."
    type_into(driver, "top-k", "3")
    driver.execute_script("document.getElementById('results').replaceChildren()")
    by_id(driver, "top-k").send_keys(Keys.ENTER)  # keyboard alone: Enter in a field submits the form
    wait_for(driver, lambda: texts(driver, ".result .bar-label"))
    assert len(texts(driver, ".result .bar-label")) == 3

    # A loaded model's own classes.
    Select = pytest.importorskip("selenium.webdriver.support.ui").Select
    Select(by_id(driver, "model")).select_by_value("pets")
    by_id(driver, "use-model-classes").click()
    submit_and_wait(driver, "results")
    assert set(texts(driver, ".result .bar-label")) <= set(CLASSES)
    assert by_id(driver, "answered-by").text.startswith("pets v")

    # Switch the default model: a wrong token is a readable refusal; the right one switches it.
    Select(by_id(driver, "default-model")).select_by_value("pets")
    type_into(driver, "admin-token", "wrong")
    by_id(driver, "set-default").click()
    wait_for(driver, lambda: "wrong admin token" in by_id(driver, "admin-status").text)
    type_into(driver, "admin-token", ADMIN_TOKEN)
    by_id(driver, "set-default").click()
    wait_for(driver, lambda: "now pets" in by_id(driver, "admin-status").text)
    wait_for(driver, lambda: "yes" in driver.find_element("css selector", "tr[data-model='pets']").text)
    assert httpx.get(server.url + "/v1/models").json()["default"] == "pets"
    assert driver.save_screenshot(str(artifacts / "ui-admin.png"))
