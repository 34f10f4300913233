"""Hot swap, end to end: 20 swaps under continuous concurrent load fail no request; every answer
names its version and equals that version's offline output; retired versions are freed once
their requests finish; corrupt and incompatible checkpoints are refused while the running
version keeps serving."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from pathlib import Path
from typing import Any

import httpx

from models.backbone import Backbone, build_backbone, file_sha256
from tests.service.conftest import (
    CLASSES,
    admin_headers,
    assert_matches,
    image_bytes,
    make_learner,
    multipart,
    offline_scores,
    running,
    server_settings,
    wait_until,
)
from tests.service.conftest import write_checkpoint as write
from tests.service.swap_load import swaps_under_load, while_classifying

SWAPS = 20
WORKERS = 4
LABELS = ["cat", "zebra", "dog"]  # "zebra" is not a trained class: encoded with each version's prompt


def test_twenty_swaps_under_concurrent_load_fail_no_request(tmp_path: Path, tiny_backbone: Backbone) -> None:
    learners = [make_learner(tiny_backbone, seed=10 + i) for i in range(3)]
    files = [f"versions/pets-{i}.safetensors" for i in range(3)]
    by_sha = {
        file_sha256(write(tmp_path / f, learner)): learner for f, learner in zip(files, learners, strict=True)
    }
    write(tmp_path / "pets.safetensors", learners[0])
    blob = image_bytes(7)
    expected = {
        (sha, tuple(labels)): offline_scores(tiny_backbone, learner, blob, labels)
        for sha, learner in by_sha.items()
        for labels in (CLASSES, LABELS)
    }
    held: list = []
    order = [files[(i + 1) % len(files)] for i in range(SWAPS)]

    with running(server_settings(tmp_path, max_wait_ms=2, watch=False)) as server:
        swaps, results = swaps_under_load(
            server, blob, order, WORKERS, LABELS, CLASSES,
            record=lambda version: held.append(weakref.ref(version.learner)), wait_s=10, seconds=60,
        )  # fmt: skip
        wait_until(lambda: not server.registry.retired, timeout_s=10)
        active = server.registry.active["pets"]
        cached_versions = {key[0] for key in server.state.runtime.text.entries}

    assert [status for status, _ in swaps] == [200] * SWAPS, swaps
    assert active.number == SWAPS + 1
    assert [status for _, status, _ in results] == [200] * len(results), "a request failed during swaps"
    seen = {body["model"]["version"] for _, _, body in results}
    assert seen == {str(v) for v in range(1, SWAPS + 2)}, f"not every version served: {sorted(seen)}"
    for labels, _, body in results:
        assert_matches(body["results"][0], expected[(body["model"]["sha256"], tuple(labels))])
    gc.collect()
    alive = [ref for ref in held if ref() is not None]
    assert alive == [held[-1]], f"{len(alive)} versions still in memory; only the active one should be"
    assert cached_versions <= {"pets@21", "zeroshot@1"}, cached_versions


def test_corrupt_and_incompatible_checkpoints_are_refused_while_the_old_version_serves(
    tmp_path: Path, tiny_backbone: Backbone
) -> None:
    learner = make_learner(tiny_backbone, seed=1)
    write(tmp_path / "pets.safetensors", learner)
    good = write(tmp_path / "versions/good.safetensors", make_learner(tiny_backbone, seed=2)).read_bytes()
    (tmp_path / "versions/flipped.safetensors").write_bytes(good[:-8] + bytes(8))  # data fails its checksum
    (tmp_path / "versions/garbage.safetensors").write_bytes(b"definitely not a checkpoint")
    other = build_backbone("clipserve-tiny-vit", pretrained=None, seed=1)
    write(tmp_path / "versions/other-backbone.safetensors", make_learner(other, seed=3))
    unknown = make_learner(tiny_backbone, seed=4)
    unknown.method = "no-such-method"  # type: ignore[misc]
    write(tmp_path / "versions/unknown-method.safetensors", unknown)
    blob = image_bytes(3)
    expected = offline_scores(tiny_backbone, learner, blob, CLASSES)
    refusals = {
        "flipped": (422, "corrupt"),
        "garbage": (422, "corrupt"),
        "other-backbone": (409, "incompatible"),
        "unknown-method": (409, "no-such-method"),
        "missing": (404, "not found"),
    }

    async def try_each(client: httpx.AsyncClient, _: list) -> dict[str, httpx.Response]:
        answers = {}
        for name in refusals:
            await asyncio.sleep(0.05)
            answers[name] = await client.post(
                "/admin/models/pets/swap",
                json={"file": f"versions/{name}.safetensors"},
                headers=admin_headers(),
            )
        return answers

    with running(server_settings(tmp_path, watch=False)) as server:
        answers, results = while_classifying(server, blob, 2, LABELS, CLASSES, 60, try_each)
        listing = httpx.get(server.url + "/v1/models").json()
        metrics = httpx.get(server.url + "/metrics").text

    for name, (status, words) in refusals.items():
        assert answers[name].status_code == status, (name, answers[name].text)
        message = answers[name].json()["error"]["message"]
        assert words in message and name in message, message
    assert results and all(status == 200 for _, status, _ in results)
    assert {body["model"]["version"] for _, _, body in results} == {"1"}
    for labels, _, body in results:
        if labels == CLASSES:
            assert_matches(body["results"][0], expected)
    pets = next(m for m in listing["data"] if m["name"] == "pets")
    assert pets["version"] == "1"
    assert 'clipserve_checkpoint_loads_total{result="corrupt"} 2.0' in metrics
    assert 'clipserve_checkpoint_loads_total{result="incompatible"} 2.0' in metrics
    assert 'clipserve_checkpoint_swaps_total{result="refused"} 5.0' in metrics


def test_watched_folder_loads_new_and_replaced_files_and_ignores_temp_files(
    tmp_path: Path, tiny_backbone: Backbone
) -> None:
    first, second = make_learner(tiny_backbone, seed=5), make_learner(tiny_backbone, seed=6)
    blob = image_bytes(11)

    def version_of(url: str, name: str) -> str | None:
        models = httpx.get(url + "/v1/models").json()["data"]
        return next((m["version"] for m in models if m["name"] == name), None)

    with running(server_settings(tmp_path, watch_interval_s=0.05)) as server:
        write(tmp_path / "flowers.safetensors", first)
        wait_until(lambda: version_of(server.url, "flowers") == "1", timeout_s=10)
        (tmp_path / ".flowers.safetensors.123.tmp").write_bytes(b"half a file")
        (tmp_path / "notes.txt").write_text("not a checkpoint")
        write(tmp_path / "sub" / "nested.safetensors", first)
        (tmp_path / "bad.safetensors").write_bytes(b"garbage")
        write(tmp_path / "flowers.safetensors", second)  # atomic replace -> version 2
        wait_until(lambda: version_of(server.url, "flowers") == "2", timeout_s=10)
        time.sleep(0.3)  # a few more scans
        listing = httpx.get(server.url + "/v1/models", headers=admin_headers()).json()
        response = httpx.post(server.url + "/classify", **multipart([blob], model="flowers"))

    assert {m["name"] for m in listing["data"]} == {"zeroshot", "flowers"}
    assert "corrupt" in listing["refused_files"]["bad.safetensors"]
    assert set(listing["refused_files"]) == {"bad.safetensors"}
    assert response.json()["model"]["version"] == "2"
    assert_matches(response.json()["results"][0], offline_scores(tiny_backbone, second, blob, CLASSES))


def test_admin_routes_need_the_token_and_manage_names_aliases_and_default(
    tmp_path: Path, tiny_backbone: Backbone
) -> None:
    write(tmp_path / "versions/birds.safetensors", make_learner(tiny_backbone, seed=8))
    blob = image_bytes(1)
    with running(server_settings(tmp_path)) as server, httpx.Client(base_url=server.url) as client:

        def admin(method: str, path: str, **kwargs: Any) -> httpx.Response:
            return client.request(method, "/admin" + path, headers=admin_headers(), **kwargs)

        def model_used(**fields: Any) -> httpx.Response:
            return client.post("/classify", **multipart([blob], **fields))

        body = {"name": "birds", "file": "versions/birds.safetensors"}
        assert client.post("/admin/models", json=body).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert client.post("/admin/models", json=body, headers=wrong).status_code == 401
        assert admin("POST", "/models", json=body).status_code == 201
        assert admin("POST", "/models", json=body).status_code == 409
        escape = admin("POST", "/models", json={"name": "x", "file": "../x.safetensors"})
        assert escape.status_code == 422 and "inside checkpoint_dir" in escape.json()["error"]["message"]
        assert admin("PUT", "/aliases/best", json={"model": "birds"}).status_code == 200
        assert model_used(model="best").json()["model"]["name"] == "birds"
        assert admin("PUT", "/default", json={"model": "best"}).status_code == 200
        assert model_used().json()["model"]["name"] == "birds"
        assert admin("DELETE", "/models/birds").status_code == 409  # still the default
        assert admin("PUT", "/default", json={"model": "zeroshot"}).status_code == 200
        assert admin("DELETE", "/aliases/best").status_code == 200
        assert admin("DELETE", "/models/birds").status_code == 200
        gone = model_used(model="birds")
        assert gone.status_code == 404 and "unknown model 'birds'" in gone.json()["error"]["message"]

    with running(server_settings(tmp_path, admin_token=None)) as server:
        disabled = httpx.post(server.url + "/admin/models", json=body, headers=admin_headers())
        assert disabled.status_code == 403 and "disabled" in disabled.json()["error"]["message"]
