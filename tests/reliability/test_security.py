"""Security, end to end: the admin token (every route, every way of getting it wrong, compared in
constant time), checkpoints only from checkpoint_dir (traversal, absolute paths and symlinks out of
it refused, through the admin API and the watcher), only safetensors (a pickle is never
unpickled, whatever its name), no URL in a request is fetched, and no error body carries a path."""

from __future__ import annotations

import http.server
import inspect
import pickle
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import torch

from models.backbone import Backbone
from service.api.routes import deps
from tests.reliability.conftest import assert_clean_error
from tests.service.conftest import (
    ADMIN_TOKEN,
    admin_headers,
    image_bytes,
    make_learner,
    multipart,
    running,
    server_settings,
    wait_until,
    write_checkpoint,
)

ADMIN_CALLS = [
    ("POST", "/admin/models", {"name": "x", "file": "x.safetensors"}),
    ("POST", "/admin/models/pets/swap", {"file": "x.safetensors"}),
    ("DELETE", "/admin/models/pets", None),
    ("PUT", "/admin/default", {"model": "pets"}),
    ("PUT", "/admin/aliases/a", {"model": "pets"}),
    ("DELETE", "/admin/aliases/a", None),
]
WRONG_AUTHORIZATION: list[str | bytes | None] = [
    None,
    "",
    "Bearer",
    f"Basic {ADMIN_TOKEN}",
    f"Token {ADMIN_TOKEN}",
    ADMIN_TOKEN,
    f"Bearer {ADMIN_TOKEN}x",
    f"Bearer {ADMIN_TOKEN[:-1]}",
    f"Bearer {ADMIN_TOKEN.upper()}",
    f"Bearer  {ADMIN_TOKEN}",
    "Bearer \u00e9".encode("latin-1"),
]


class Payload:
    """Unpickling this touches a marker file: proof that something ran pickle.load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_admin_token_is_compared_in_constant_time() -> None:
    source = inspect.getsource(deps.require_admin)
    assert "compare_digest(" in source and "==" not in source.split("compare_digest")[0].split("token =")[-1]


def test_every_admin_route_refuses_every_wrong_authorization(tmp_path: Path, tiny_backbone: Backbone) -> None:
    write_checkpoint(tmp_path / "pets.safetensors", make_learner(tiny_backbone, seed=1))
    with running(server_settings(tmp_path)) as server, httpx.Client(base_url=server.url) as client:
        for method, path, body in ADMIN_CALLS:
            for authorization in WRONG_AUTHORIZATION:
                headers = {} if authorization is None else {"Authorization": authorization}
                response = client.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (method, path, authorization, response.text)
                assert response.headers["WWW-Authenticate"] == "Bearer"
                assert ADMIN_TOKEN not in response.text
                assert_clean_error(response, str(tmp_path))
        listing = client.get("/v1/models").json()
    assert {m["name"] for m in listing["data"]} == {"zeroshot", "pets"} and listing["aliases"] == {}
    with (
        running(server_settings(tmp_path, admin_token=None)) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        for method, path, body in ADMIN_CALLS:
            response = client.request(method, path, json=body, headers=admin_headers())
            assert response.status_code == 403 and "disabled" in assert_clean_error(response, str(tmp_path))


@pytest.fixture
def outside(tmp_path: Path, tiny_backbone: Backbone) -> Path:
    """A valid checkpoint outside the served folder, and the folder with links to it."""
    served = tmp_path / "served"
    write_checkpoint(served / "pets.safetensors", make_learner(tiny_backbone, seed=1))
    secret = write_checkpoint(
        tmp_path / "elsewhere" / "secret.safetensors", make_learner(tiny_backbone, seed=2)
    )
    (served / "link.safetensors").symlink_to(secret)
    (served / "versions").mkdir()
    (served / "versions" / "link.safetensors").symlink_to(secret)
    (served / "dirlink").symlink_to(secret.parent, target_is_directory=True)
    return served


def test_checkpoints_load_only_from_checkpoint_dir(outside: Path) -> None:
    secret = outside.parent / "elsewhere" / "secret.safetensors"
    escapes = [
        "../elsewhere/secret.safetensors",
        "versions/../../elsewhere/secret.safetensors",
        str(secret),
        "link.safetensors",
        "versions/link.safetensors",
        "dirlink/secret.safetensors",
        "%2e%2e/elsewhere/secret.safetensors",
        "..\\elsewhere\\secret.safetensors",
        "pets.safetensors\x00.txt",
        ".hidden.safetensors",
        "pets.pt",
        "",
    ]
    with (
        running(server_settings(outside, watch_interval_s=0.05)) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        admin = admin_headers()  # refused files are listed to the admin only
        refused = lambda: c.get("/v1/models", headers=admin).json()["refused_files"]  # noqa: E731
        wait_until(lambda: "link.safetensors" in refused(), timeout_s=10)
        answers = {
            file: c.post("/admin/models", json={"name": "stolen", "file": file}, headers=admin_headers())
            for file in escapes
        }
        listing = c.get("/v1/models", headers=admin).json()
    for file, response in answers.items():
        assert response.status_code in (404, 422), (file, response.status_code, response.text)
        if file != str(secret):  # that one echoes the caller's own path back, nothing more
            assert_clean_error(response, str(outside.parent))
    assert {m["name"] for m in listing["data"]} == {"zeroshot", "pets"}  # neither "link" nor "stolen"
    assert "outside checkpoint_dir" in listing["refused_files"]["link.safetensors"]


@pytest.mark.parametrize("name", ["pets.safetensors", "pets.pt", "pets.bin"])
def test_pickles_are_never_unpickled_whatever_their_name(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "unpickled"
    served = tmp_path / "served"
    served.mkdir()
    torch.save({"weights": torch.zeros(2), "payload": Payload(marker)}, served / name)
    (served / "raw.safetensors").write_bytes(pickle.dumps(Payload(marker)))
    with (
        running(server_settings(served, watch_interval_s=0.05)) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        answers = [
            c.post("/admin/models", json={"name": "evil", "file": file}, headers=admin_headers())
            for file in (name, "raw.safetensors")
        ]
        time.sleep(0.3)  # a few watcher scans
        listing = c.get("/v1/models", headers=admin_headers()).json()
    assert not marker.exists(), "a pickle was unpickled"
    for response in answers:
        assert response.status_code == 422, response.text
        assert_clean_error(response, str(tmp_path))
    assert {m["name"] for m in listing["data"]} == {"zeroshot"}
    for message in listing["refused_files"].values():
        assert str(tmp_path) not in message


class CountingHandler(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        CountingHandler.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(image_bytes(1))

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[str]:
    """A loopback HTTP server that would serve an image to anyone who fetched from it."""
    CountingHandler.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CountingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cat.png"
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_urls_in_requests_are_never_fetched(tmp_path: Path, listener: str) -> None:
    blob = image_bytes(2)
    with running(server_settings(tmp_path)) as server, httpx.Client(base_url=server.url) as client:
        as_label = client.post("/classify", **multipart([blob], [listener, "dog"]))
        as_image = client.post("/classify", json={"images": [listener], "labels": ["cat"]})
        as_data_uri = client.post("/classify", json={"images": [f"data:,{listener}"], "labels": ["cat"]})
        as_file = client.post("/classify", **multipart([listener.encode()], ["cat"]))
        as_model = client.post("/classify", **multipart([blob], ["cat"], model=listener))
        as_template = client.post("/classify", **multipart([blob], ["cat"], templates=listener + "/{}"))
        as_hf_input = client.post("/", json={"inputs": listener, "parameters": {"candidate_labels": ["cat"]}})
        as_embedding = client.post(
            "/v1/embeddings", json={"model": "zeroshot", "input": [listener], "modality": "image"}
        )
        v2_images = {"name": "images", "shape": [1], "datatype": "BYTES", "data": [listener]}
        v2_labels = {"name": "labels", "shape": [1], "datatype": "BYTES", "data": ["cat"]}
        as_v2_image = client.post("/v2/models/zeroshot/infer", json={"inputs": [v2_images, v2_labels]})
        as_embedded_text = client.post("/v1/embeddings", json={"model": "zeroshot", "input": [listener]})
    assert as_label.status_code == 200 and as_embedded_text.status_code == 200  # text, never fetched
    assert as_v2_image.status_code == 403 and "image URLs are off" in as_v2_image.json()["error"]
    assert {p["label"] for p in as_label.json()["results"][0]["predictions"]} == {listener, "dog"}
    assert as_template.status_code == 200
    for response in (as_image, as_data_uri, as_file, as_model, as_hf_input, as_embedding):
        assert_clean_error(response, str(tmp_path))
    assert CountingHandler.hits == []
