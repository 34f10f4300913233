"""How a lane forms a batch (service/engine/batcher.py, Lane._wait_to_fill): it waits at most
max_wait from its first job's arrival, gathers every job that arrives meanwhile, and starts at
once when the queue holds a full batch; a job that arrives without filling it does not start it."""

from __future__ import annotations

import asyncio
import time

import torch
import torch.nn.functional as F

from models.backbone import Preprocessing
from service.engine.batcher import BatchConfig, Job, Lane
from service.engine.decode import Pixels
from service.engine.device_io import ClassMatrix
from service.metrics import Metrics

PRE = Preprocessing(4, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
D = 8


class RecordingForward:
    """Scores each job against its class matrix; records when each pass started and its jobs."""

    def __init__(self) -> None:
        self.passes: list[tuple[float, int]] = []  # (monotonic start, jobs in the pass)

    def __call__(self, x: torch.Tensor, jobs: list[Job]) -> list[torch.Tensor | Exception]:
        self.passes.append((time.monotonic(), len(jobs)))
        features = F.normalize(x.flatten(1)[:, :D].float(), dim=-1)  # [N, D]
        out: list[torch.Tensor | Exception] = []
        start = 0
        for job in jobs:
            out.append(features[start : start + job.size] @ job.target.t())  # [n, C]
            start += job.size
        return out


def pixels(images: int = 1) -> Pixels:
    return Pixels(torch.randint(0, 255, (images, 3, 4, 4), dtype=torch.uint8))


def classes() -> ClassMatrix:
    return ClassMatrix(F.normalize(torch.randn(3, D), dim=-1))


def run_lane(max_batch: int, max_wait_s: float, scenario) -> RecordingForward:  # type: ignore[no-untyped-def]
    forward = RecordingForward()

    async def main() -> None:
        config = BatchConfig(max_batch=max_batch, max_wait_s=max_wait_s, max_queue=64)
        lane = Lane("shared", forward, config, Metrics(), PRE, torch.device("cpu"))
        try:
            await scenario(lane)
        finally:
            await lane.close()

    asyncio.run(main())
    return forward


def test_a_full_batch_starts_at_once_without_waiting_for_max_wait() -> None:
    async def scenario(lane: Lane) -> None:
        started = time.monotonic()
        jobs = [lane.submit(pixels(), classes()) for _ in range(4)]
        results = await asyncio.wait_for(asyncio.gather(*jobs), timeout=10)  # max_wait is 60 s
        assert [r.shape for r in results] == [(1, 3)] * 4
        assert time.monotonic() - started < 10

    forward = run_lane(max_batch=4, max_wait_s=60, scenario=scenario)
    assert [jobs for _, jobs in forward.passes] == [4]


def test_the_batch_filled_by_a_later_job_starts_when_that_job_arrives() -> None:
    async def scenario(lane: Lane) -> None:
        first = asyncio.ensure_future(lane.submit(pixels(3), classes()))  # 3 of 4 images: waits
        await asyncio.sleep(0.3)
        assert not first.done()
        second = asyncio.ensure_future(lane.submit(pixels(1), classes()))  # fills it
        await asyncio.wait_for(asyncio.gather(first, second), timeout=10)  # max_wait is 60 s

    forward = run_lane(max_batch=4, max_wait_s=60, scenario=scenario)
    assert [jobs for _, jobs in forward.passes] == [2]


def test_a_partial_batch_waits_max_wait_from_its_first_job_and_takes_later_arrivals() -> None:
    submitted: list[float] = []

    async def scenario(lane: Lane) -> None:
        submitted.append(time.monotonic())
        first = asyncio.ensure_future(lane.submit(pixels(), classes()))
        await asyncio.sleep(0.1)
        second = asyncio.ensure_future(lane.submit(pixels(), classes()))  # does not fill 8: no early start
        await asyncio.gather(first, second)

    forward = run_lane(max_batch=8, max_wait_s=1.0, scenario=scenario)
    (started, jobs), *rest = forward.passes
    assert rest == [] and jobs == 2
    # at the first job's deadline: not at the second's arrival, and not much later (0.9 s of slack
    # for a busy machine; a wait twice as long would be a different rule)
    assert 1.0 - 0.01 <= started - submitted[0] < 1.9
