"""Swaps of model `pets` while clients keep classifying: the traffic of the hot-swap tests
(test_hot_swap.py, test_hot_swap_methods.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import httpx

from service.catalog.versions import Version
from tests.service.conftest import admin_headers, multipart

T = TypeVar("T")
# (the labels a response scored, its status, its body)
Result = tuple[Sequence[str], int, Any]


async def keep_classifying(
    client: httpx.AsyncClient, blob: bytes, stop: asyncio.Event, out: list[Result],
    labels: Sequence[str], classes: Sequence[str], seconds: float,
) -> None:  # fmt: skip
    """Classify `blob` with model pets until `stop`: every other request with `labels`, the others
    with the model's own `classes`."""
    deadline = time.monotonic() + seconds
    for i in range(5000):
        if stop.is_set() or time.monotonic() > deadline:
            return
        sent = list(labels) if i % 2 else []
        response = await client.post("/classify", **multipart([blob], sent, model="pets"))
        out.append((sent or classes, response.status_code, response.json()))


async def swap_in_turn(
    client: httpx.AsyncClient, server: Any, files: Sequence[str], out: list[Result],
    record: Callable[[Version], None], wait_s: float,
) -> list[tuple[int, Any]]:  # fmt: skip
    """Swap pets to each file in turn, each once the load has been answered by the version before
    it (waiting up to `wait_s`); `record` sees every version once it answered, the last included."""
    answers = []
    for i in range(len(files) + 1):
        for _ in range(round(wait_s / 0.02)):  # bounded
            if any(body["model"]["version"] == str(i + 1) for _, _, body in out[-50:]):
                break
            await asyncio.sleep(0.02)
        record(server.registry.active["pets"])
        if i == len(files):
            break
        response = await client.post(
            "/admin/models/pets/swap", json={"file": files[i]}, headers=admin_headers()
        )
        answers.append((response.status_code, response.json()))
    return answers


def while_classifying(
    server: Any, blob: bytes, clients: int, labels: Sequence[str], classes: Sequence[str],
    seconds: float, action: Callable[[httpx.AsyncClient, list[Result]], Awaitable[T]],
) -> tuple[T, list[Result]]:  # fmt: skip
    """`action(client, responses so far)`'s result and every response of `clients` classifying
    meanwhile (they stop 0.1 s after the action, so the last version it made answers too)."""
    results: list[Result] = []

    async def scenario() -> T:
        stop = asyncio.Event()
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            workers = [
                asyncio.create_task(keep_classifying(client, blob, stop, results, labels, classes, seconds))
                for _ in range(clients)
            ]
            try:
                return await action(client, results)
            finally:
                await asyncio.sleep(0.1)
                stop.set()
                await asyncio.gather(*workers)

    return asyncio.run(scenario()), results


def swaps_under_load(
    server: Any,
    blob: bytes,
    files: Sequence[str],
    clients: int,
    labels: Sequence[str],
    classes: Sequence[str],
    record: Callable[[Version], None],
    wait_s: float,
    seconds: float,
) -> tuple[list[tuple[int, Any]], list[Result]]:
    """The swaps' answers (swap_in_turn) and every response of `clients` classifying meanwhile."""
    return while_classifying(
        server,
        blob,
        clients,
        labels,
        classes,
        seconds,
        lambda client, results: swap_in_turn(client, server, files, results, record, wait_s),
    )
