"""The state file in the checkpoint folder, end to end (a real server on loopback): admin changes
are recorded and come back after a restart; a state file that is corrupt, names a missing file or
a file whose bytes changed is refused with the reason while the last good state keeps serving;
a corrupt one at start-up stops start-up and says why; two processes changing it at once lose
nothing; a folder where it cannot be written refuses admin changes and still serves its files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from models.backbone import Backbone, file_sha256
from service.catalog.store import STATE_FILE, StateFile
from tests.service.conftest import (
    admin_headers,
    image_bytes,
    make_learner,
    multipart,
    running,
    server_settings,
    wait_until,
    write_checkpoint,
)

PETS_2, BIRDS = "versions/pets-2.safetensors", "versions/birds.safetensors"


def admin(client: httpx.Client, method: str, path: str, **body: Any) -> httpx.Response:
    return client.request(method, "/admin" + path, json=body or None, headers=admin_headers())


def listing(client: httpx.Client) -> dict[str, Any]:
    """/v1/models as the admin sees it (the state file's part is for the admin only)."""
    return client.get("/v1/models", headers=admin_headers()).json()


def versions(client: httpx.Client) -> dict[str, str]:
    return {m["name"]: m["version"] for m in listing(client)["data"]}


@pytest.fixture
def folder(tmp_path: Path, tiny_backbone: Backbone) -> Path:
    write_checkpoint(tmp_path / "pets.safetensors", make_learner(tiny_backbone, seed=1))
    write_checkpoint(tmp_path / "versions/pets-2.safetensors", make_learner(tiny_backbone, seed=2))
    write_checkpoint(tmp_path / "versions/birds.safetensors", make_learner(tiny_backbone, seed=3))
    return tmp_path


def test_changes_are_recorded_and_a_restart_serves_them_again(folder: Path) -> None:
    with running(server_settings(folder)) as server, httpx.Client(base_url=server.url) as client:
        assert (
            admin(client, "POST", "/models/pets/swap", file="versions/pets-2.safetensors").status_code == 200
        )
        assert (
            admin(client, "POST", "/models", name="birds", file="versions/birds.safetensors").status_code
            == 201
        )
        assert admin(client, "PUT", "/aliases/best", model="birds").status_code == 200
        assert admin(client, "PUT", "/default", model="best").status_code == 200
        assert admin(client, "DELETE", "/models/pets").status_code == 200  # a watched file, unloaded
        before = listing(client)
    recorded = json.loads((folder / STATE_FILE).read_text())
    assert recorded["default"] == "best" and recorded["aliases"] == {"best": "birds"}
    assert recorded["numbers"] == {"pets": 2, "birds": 1} and set(recorded["models"]) == {"birds"}

    with running(server_settings(folder)) as server, httpx.Client(base_url=server.url) as client:
        after = listing(client)
        answer = client.post("/classify", **multipart([image_bytes(1)])).json()
    assert (after["aliases"], after["default"]) == (before["aliases"], "best")
    assert restarted(after["data"]) == restarted(before["data"])
    assert [m["name"] for m in after["data"]] == ["birds", "zeroshot"]
    assert "pets" not in versions_of(after)  # its file is still there, but it was unloaded
    assert answer["model"]["name"] == "birds"


def restarted(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The models as a restart must bring them back: all of it but the built-in zeroshot model's
    `created`, which is when the service started."""
    return [{k: v for k, v in m.items() if m["name"] != "zeroshot" or k != "created"} for m in data]


def versions_of(body: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["version"] for m in body["data"]}


def test_a_bad_state_file_is_refused_and_the_last_good_state_keeps_serving(
    folder: Path, tiny_backbone: Backbone
) -> None:
    state = folder / STATE_FILE
    blob = image_bytes(2)
    with running(server_settings(folder)) as server, httpx.Client(base_url=server.url) as client:
        assert (
            admin(client, "POST", "/models/pets/swap", file="versions/pets-2.safetensors").status_code == 200
        )
        good = state.read_bytes()

        def refused() -> str | None:
            reason: str | None = listing(client)["state"]["refused"]
            return reason

        def serves_version_2() -> None:
            answer = client.post("/classify", **multipart([blob], model="pets"))
            assert answer.status_code == 200 and answer.json()["model"]["version"] == "2"

        StateFile(folder).write(b'{"format": 1, "models": {"pets": ')  # e.g. a hand edit gone wrong
        wait_until(lambda: refused() is not None, timeout_s=10)
        assert "not valid JSON" in str(refused())
        serves_version_2()
        change = admin(client, "PUT", "/aliases/best", model="pets")
        assert change.status_code == 409 and "fix or remove it" in change.json()["error"]["message"]

        missing = json.loads(good)
        missing["models"]["pets"]["file"] = "versions/gone.safetensors"
        StateFile(folder).write(json.dumps(missing).encode())
        wait_until(lambda: "gone.safetensors is missing" in str(refused()), timeout_s=10)
        serves_version_2()
        (folder / "versions/gone.safetensors").write_bytes((folder / PETS_2).read_bytes())
        wait_until(lambda: refused() is None, timeout_s=15)  # restored: tried again, applied
        serves_version_2()

        StateFile(folder).write(good)  # repaired: applied again
        wait_until(lambda: refused() is None, timeout_s=10)
        # pets 3 recorded (say, by a replica) as bytes that this folder's file no longer has
        write_checkpoint(folder / "versions/pets-2.safetensors", make_learner(tiny_backbone, seed=9))
        recorded = json.loads(good)
        recorded["models"]["pets"]["version"] = recorded["numbers"]["pets"] = 3
        StateFile(folder).write(json.dumps(recorded).encode())
        wait_until(lambda: "not the file recorded" in str(refused()), timeout_s=10)
        serves_version_2()
        metrics = client.get("/metrics").text
    assert 'clipserve_state_file_updates_total{result="refused"} 3.0' in metrics
    assert "clipserve_state_file_refused 1.0" in metrics  # the alert's signal


def test_start_up_with_a_corrupt_state_file_stops_and_says_why(folder: Path) -> None:
    (folder / STATE_FILE).write_text('{"format": 1, "default": 7}')
    with running(server_settings(folder), wait_ready=False) as server:
        wait_until(lambda: server.state.error is not None, timeout_s=30)
        ready = httpx.get(server.url + "/health/ready")
    message = ready.json()["error"]["message"]
    assert ready.status_code == 503 and STATE_FILE in message and "default must be" in message


def test_two_processes_changing_the_state_at_once_lose_nothing(folder: Path) -> None:
    """Two servers on one folder stand for two workers: each change is made under the writers'
    lock on the file as it is then, so neither overwrites the other's."""
    settings = server_settings(folder, watch=False)
    with running(settings) as first, running(settings) as second:
        import asyncio

        async def aliases(url: str, prefix: str) -> list[int]:
            async with httpx.AsyncClient(base_url=url, headers=admin_headers(), timeout=60) as client:
                calls = [client.put(f"/admin/aliases/{prefix}{i}", json={"model": "pets"}) for i in range(10)]
                return [response.status_code for response in await asyncio.gather(*calls)]

        async def both() -> list[list[int]]:
            return list(await asyncio.gather(aliases(first.url, "a"), aliases(second.url, "b")))

        statuses = asyncio.run(both())
        expected = {f"{p}{i}": "pets" for p in "ab" for i in range(10)}
        wait_until(lambda: httpx.get(first.url + "/v1/models").json()["aliases"] == expected, timeout_s=10)
        wait_until(lambda: httpx.get(second.url + "/v1/models").json()["aliases"] == expected, timeout_s=10)
    assert statuses == [[200] * 10, [200] * 10]
    assert json.loads((folder / STATE_FILE).read_text())["aliases"] == expected


def test_a_folder_where_the_state_cannot_be_written_refuses_changes_and_serves_its_files(
    folder: Path, tiny_backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(self: StateFile, raw: bytes) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(StateFile, "write", read_only)
    with running(server_settings(folder)) as server, httpx.Client(base_url=server.url) as client:
        assert versions(client)["pets"] == "1"  # recorded nowhere, numbered in this process
        change = admin(client, "PUT", "/default", model="pets")
        write_checkpoint(folder / "pets.safetensors", make_learner(tiny_backbone, seed=4))
        wait_until(lambda: versions(client)["pets"] == "2", timeout_s=10)
        sha = listing(client)["data"]
    assert change.status_code == 409 and "Read-only file system" in change.json()["error"]["message"]
    assert next(m for m in sha if m["name"] == "pets")["sha256"] == file_sha256(folder / "pets.safetensors")
    assert not (folder / STATE_FILE).exists()


def test_start_up_records_every_top_level_file_before_ready_whatever_the_default(
    folder: Path, tiny_backbone: Backbone
) -> None:
    """The default's own file may come after others: recording those must not wait for it."""
    write_checkpoint(folder / "a-first.safetensors", make_learner(tiny_backbone, seed=5))
    with running(server_settings(folder, default_model="pets")) as server:
        ready = httpx.get(server.url + "/health/ready").json()
    assert ready["models"] == ["a-first", "pets", "zeroshot"]
    assert set(json.loads((folder / STATE_FILE).read_text())["models"]) == {"a-first", "pets"}
