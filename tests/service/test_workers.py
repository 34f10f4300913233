"""`clipserve serve --workers 2`, a real subprocess on loopback with the tiny model (issue 17):

- 50 swaps through the admin API under 8 clients: no request fails, every answer equals the
  offline output of the version it names (numbers agree across workers), and every worker serves
  the new version soon after the swap is acknowledged (measured on new connections; asserted
  under 2 s, the worst lag printed);
- a restart comes back to the same aliases, default and versions, the same from every worker;
- kill -9 of one worker under load: only requests on its connections fail, it is replaced, the
  other keeps answering;
- request counters from /metrics equal the requests sent, whichever worker answers the scrape;
- SIGTERM drains every worker (tests/service/test_health.py runs the drain with 1 and 2 workers).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.loadgen import probe_round
from models.backbone import Backbone, file_sha256
from tests.service.conftest import (
    CLASSES,
    assert_matches,
    image_bytes,
    make_learner,
    multipart,
    offline_scores,
)
from tests.service.conftest import write_checkpoint as write
from tests.service.workers import Answer, Service, admin, every_worker, keep_classifying

pytestmark = pytest.mark.slow
SWAPS = 50
CLIENTS = 8
LABELS = [tuple(CLASSES), ("cat", "zebra", "dog")]  # "zebra": encoded with each version's prompt
FILES = ["versions/pets-a.safetensors", "versions/pets-b.safetensors"]
BIRDS, PETS_2 = "versions/birds.safetensors", "versions/pets-2.safetensors"
PROPAGATION_LIMIT_S = 2.0  # issue 17, on the 2-core machine
# Other work on a shared machine starves the workers (seen: 4.5 s at load 13 on 2 cores, tests at
# nice 10): there the test asserts only that the change reaches every worker, and says so.
BUSY_LIMIT_S = 15.0


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: Backbone) -> Path:
    """pets.safetensors (version 1) and two more versions to swap between, on one image."""
    root = tmp_path_factory.mktemp("workers")
    learners = [make_learner(tiny_backbone, seed=20 + i) for i in range(3)]
    write(root / "pets.safetensors", learners[0])
    for file, learner in zip(FILES, learners[1:], strict=True):
        write(root / file, learner)
    return root


@pytest.fixture(scope="module")
def expected(folder: Path, tiny_backbone: Backbone) -> dict[tuple[str, tuple[str, ...]], Any]:
    """(sha256, labels) -> the offline scores of that version."""
    learners = [make_learner(tiny_backbone, seed=20 + i) for i in range(3)]
    files = ["pets.safetensors", *FILES]
    blob = image_bytes(5)
    return {
        (file_sha256(folder / file), labels): offline_scores(tiny_backbone, learner, blob, labels)
        for file, learner in zip(files, learners, strict=True)
        for labels in LABELS
    }


@pytest.fixture(scope="module")
def service(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    running = Service(folder, tmp_path_factory.mktemp("logs") / "service.log").start()
    try:
        yield running
    finally:
        running.stop()


def test_fifty_swaps_under_eight_clients_fail_nothing_and_reach_every_worker(
    service: Service, expected: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    pids = service.worker_pids()
    answers: list[Answer] = []
    busy = os.getloadavg()[0] > 2 * (os.cpu_count() or 1)  # before our own load starts
    acks, lags = asyncio.run(_swaps_under_load(service, pids, answers))

    served, observed = sorted(lag for lag, _ in lags), sorted(lag for _, lag in lags)
    with capsys.disabled():
        print(
            f"\n{SWAPS} swaps, write -> every worker serving it: worst {served[-1]:.3f} s, median "
            f"{served[SWAPS // 2]:.3f} s; ack -> seen from every worker on new connections: worst "
            f"{observed[-1]:.3f} s, median {observed[SWAPS // 2]:.3f} s"
            + (f" (machine busy: load {os.getloadavg()[0]:.1f}; bound {BUSY_LIMIT_S} s)" if busy else "")
        )
    assert [status for status, _, _ in acks] == [200] * SWAPS, acks
    failed = [a for a in answers if a.status != 200]
    assert not failed, failed[:5]
    versions = {"1": file_sha256(service.folder / "pets.safetensors")}
    versions |= {version: sha for _, version, sha in acks}
    assert [int(version) for _, version, _ in acks] == list(range(2, SWAPS + 2))
    for answer in answers:  # the version it names, with that version's bytes and scores
        model = answer.body["model"]
        assert versions[model["version"]] == model["sha256"], model
        assert_matches(answer.body["results"][0], expected[(model["sha256"], answer.labels)])
    assert {a.pid for a in answers} == pids, "both workers should have served the clients"
    assert served[-1] < (BUSY_LIMIT_S if busy else PROPAGATION_LIMIT_S), lags


async def _swaps_under_load(
    service: Service, pids: set[int], answers: list[Answer]
) -> tuple[list[tuple[int, str, str]], list[tuple[float, float]]]:
    stop = asyncio.Event()
    blob = image_bytes(5)
    clients = [  # new connections now and then: both workers serve every client's requests
        asyncio.create_task(keep_classifying(service.url, i, blob, LABELS, stop, answers, reconnect_every=10))
        for i in range(CLIENTS)
    ]
    acks, lags = [], []
    try:
        for i in range(SWAPS):
            response = await asyncio.to_thread(
                admin, service.url, "POST", "/models/pets/swap", json={"file": FILES[i % 2]}
            )
            acknowledged = time.monotonic()
            body = response.json()
            acks.append((response.status_code, body.get("version"), body.get("sha256")))
            if response.status_code != 200:
                break
            observed = await _propagation(service.port, pids, body["version"]) - acknowledged
            lags.append((_state_lag(service.url), observed))
            await _until_served(answers, body["version"])
    finally:
        stop.set()
        await asyncio.gather(*clients)
    return acks, lags


async def _propagation(port: int, pids: set[int], version: str) -> float:
    """When the last worker was first seen listing `version` for pets. Rounds of 4 probes at once,
    each on a new connection: a lone probe would mostly reach whichever worker is idler."""
    seen: dict[int, float] = {}
    deadline = time.monotonic() + 20
    while set(seen) != pids:
        assert time.monotonic() < deadline, f"version {version} not on every worker: {seen}"
        for pid, listing in await probe_round(port, "/v1/models", 4):
            versions = {m["name"]: m["version"] for m in listing["data"]}
            if pid not in seen and versions.get("pets") == version:
                seen[pid] = time.monotonic()
    return max(seen.values())


def _state_lag(url: str) -> float:
    """clipserve_state_file_lag_seconds: the slowest worker's time from the write to serving it."""
    text = httpx.get(url + "/metrics", timeout=10).text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    return next(s.value for s in samples if s.name == "clipserve_state_file_lag_seconds")


async def _until_served(answers: list[Answer], version: str) -> None:
    """Until a client's answer names `version` (so every version is checked against its scores)."""
    for _ in range(1000):  # bounded: 20 s
        if any(a.status == 200 and a.body["model"]["version"] == version for a in answers[-4 * CLIENTS :]):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no client was answered by version {version}")


def test_request_counters_from_any_worker_equal_the_requests_sent(service: Service) -> None:
    pids = service.worker_pids()
    before = _classify_counts(service, pids)
    assert len(set(before.values())) == 1, before  # every worker reports the same totals
    blob, sent, served_by = image_bytes(6), 40, set()
    for _ in range(sent):  # a new connection each: both workers serve some
        response = httpx.post(service.url + "/classify", **multipart([blob], ["cat", "dog"]), timeout=30)
        assert response.status_code == 200
        served_by.add(int(response.headers["x-clipserve-worker"]))
    after = _classify_counts(service, pids)
    assert served_by == pids
    assert after == {pid: next(iter(before.values())) + sent for pid in pids}, (before, after)


def _classify_counts(service: Service, pids: set[int]) -> dict[int, float]:
    """clipserve_requests_total{route="/classify", code="200"} as each worker's /metrics reports it."""
    scrapes = every_worker(service.url, pids, "/metrics", lambda _: True, timeout_s=30)
    counts = {}
    for pid, response in scrapes.items():
        samples = [s for f in text_string_to_metric_families(response.text) for s in f.samples]
        counts[pid] = sum(
            s.value
            for s in samples
            if s.name == "clipserve_requests_total" and s.labels == {"route": "/classify", "code": "200"}
        )
    return counts


def test_a_restart_comes_back_to_the_same_state_on_every_worker(
    tiny_backbone: Backbone, tmp_path: Path
) -> None:
    root = tmp_path / "checkpoints"
    for file, seed in (("pets.safetensors", 30), (BIRDS, 31), (PETS_2, 32)):
        write(root / file, make_learner(tiny_backbone, seed=seed))
    first = Service(root, tmp_path / "first.log").start()
    changes = [
        ("POST", "/models", {"name": "birds", "file": BIRDS}, 201),
        ("POST", "/models/pets/swap", {"file": PETS_2}, 200),
        ("PUT", "/aliases/best", {"model": "birds"}, 200),
        ("PUT", "/default", {"model": "best"}, 200),
    ]
    try:
        for method, path, body, status in changes:
            assert admin(first.url, method, path, json=body).status_code == status, (path, first.log())
        # generation 1: pets.safetensors recorded at start-up; then one per change
        before = _listings(first, lambda r: r.json()["state"]["generation"] == 1 + len(changes))
    finally:
        assert first.stop() == 0, first.log()
    second = Service(root, tmp_path / "second.log").start()
    try:
        after = _listings(second, lambda _: True)
        default = httpx.post(second.url + "/classify", **multipart([image_bytes(1)]), timeout=30).json()
    finally:
        assert second.stop() == 0, second.log()

    # the same from every worker, and after the restart the same again (but for the built-in
    # zeroshot model's `created`: the service's start time)
    assert len({_comparable(body) for body in before.values()}) == 1, before
    assert len({_comparable(body) for body in after.values()}) == 1, after
    assert _restarted(next(iter(after.values()))) == _restarted(next(iter(before.values())))
    listing = next(iter(after.values()))
    assert listing["default"] == "best" and listing["aliases"] == {"best": "birds"}
    versions = {m["name"]: m["version"] for m in listing["data"]}
    assert versions == {"zeroshot": "1", "pets": "2", "birds": "1"}
    assert default["model"]["name"] == "birds" and default["model"]["version"] == "1"


def _listings(service: Service, accept: Any) -> dict[int, dict[str, Any]]:
    answers = every_worker(service.url, service.worker_pids(), "/v1/models", accept, timeout_s=30, admin=True)
    return {pid: response.json() for pid, response in answers.items()}


def _restarted(listing: dict[str, Any]) -> str:
    models = listing["data"]
    data = [{k: v for k, v in m.items() if (m["name"], k) != ("zeroshot", "created")} for m in models]
    return _comparable({**listing, "data": data})


def _comparable(listing: dict[str, Any]) -> str:
    return repr(sorted(listing.items()))


def test_kill_minus_nine_fails_only_the_requests_on_that_worker_and_it_is_replaced(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running = Service(folder, tmp_path / "service.log").start()
    try:
        answers: list[Answer] = []
        victim, replacement, on_victim = asyncio.run(_kill_under_load(running, answers))
    finally:
        assert running.stop() == 0, running.log()
    failed = [a for a in answers if a.status != 200]
    with capsys.disabled():
        print(f"\nkill -9 under {CLIENTS} clients: {len(failed)} failed of {len(answers)}; "
              f"{len(on_victim)} clients were on the killed worker")  # fmt: skip
    # Failed: the requests on the killed worker's connections (one in flight per client, and a
    # reconnect the dying worker's socket could still accept); each of those clients is answered
    # again afterwards, by another worker, and the clients of the other worker never fail.
    assert all(a.status == 0 and a.pid == victim for a in failed), failed
    assert {a.client for a in failed} <= on_victim
    for client in {a.client for a in failed}:
        after = answers[max(i for i, a in enumerate(answers) if a.client == client and a.status == 0) :]
        assert any(a.client == client and a.status == 200 and a.pid != victim for a in after), client
    survivors = [a for a in answers if a.client not in on_victim]
    assert all(a.status == 200 for a in survivors)
    assert replacement != victim  # a new worker answered readiness (so it took connections)


async def _kill_under_load(service: Service, answers: list[Answer]) -> tuple[int, int, set[int]]:
    stop = asyncio.Event()
    blob = image_bytes(5)
    clients = [
        asyncio.create_task(keep_classifying(service.url, i, blob, LABELS, stop, answers))
        for i in range(CLIENTS)
    ]
    try:
        while len({a.client for a in answers}) < CLIENTS:  # every client connected and answered
            await asyncio.sleep(0.05)
        last = {a.client: a.pid for a in answers}
        victim = max(set(last.values()), key=lambda pid: list(last.values()).count(pid))
        before = service.worker_pids()
        os.kill(victim, signal.SIGKILL)
        on_victim = {client for client, pid in last.items() if pid == victim}
        replacement = await asyncio.to_thread(service.wait_for_workers, 1, before)
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*clients)
    return victim, replacement.pop(), on_victim
