"""Cross-request batching: images from concurrent requests share one encoder pass.

A Lane owns a bounded queue and one worker thread. Its loop takes the oldest job, waits until the
queued images fill `max_batch` or the oldest job has waited `max_wait`, runs one forward pass on
the worker thread, and hands each job its rows. Jobs that waited while the previous batch ran
go straight into the next one. A full queue refuses at once (429 with Retry-After); a request
whose deadline passes while queued is removed from the queue.

Lanes by kind (DESIGN.md data path):
- `shared`: one lane for every version whose image side is stock CLIP (zero-shot and e.g. CoOp);
  the encoder pass is shared across checkpoints, each job brings its own class matrix.
- `custom`: one lane per version whose method replaces the image encoder (custom_image_encoder).
- `conditioned`: one lane per version whose text side depends on the image (image_conditioned);
  jobs bring label lists and the learner computes logits.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from models.backbone import Preprocessing
from models.prompts import PromptLearner
from service.engine.backends import ImageEncoder
from service.engine.decode import Normalise, Pixels
from service.engine.device_io import (
    ClassMatrix,
    follow_default_stream,
    gather_pixels,
    hold_for,
    on_stream,
    results_to_host,
    side_stream,
    wait_for,
)
from service.errors import Invalid, Overloaded
from service.metrics import Metrics

log = logging.getLogger("clipserve")


@dataclass(frozen=True)
class BatchConfig:
    max_batch: int
    max_wait_s: float
    max_queue: int


# A job target that asks for the image embeddings themselves ([n, D]) instead of cosines.
EMBEDDINGS = None


@dataclass(eq=False)
class Job:
    pixels: Pixels  # [n, 3, S, S] uint8, pinned on the host or (GPU decode) on the device
    # [C, D] class matrix on the device, a tuple of labels (conditioned lanes), or EMBEDDINGS
    target: Any
    future: asyncio.Future[torch.Tensor]
    enqueued: float = field(default_factory=time.monotonic)
    classes_ready: torch.cuda.Event | None = None  # the class matrix's event (matrix stream), if any

    @property
    def size(self) -> int:
        return len(self.pixels)


def new_job(pixels: Pixels, target: Any) -> Job:
    """A job for `target`: a ClassMatrix (its rows and its event), labels, EMBEDDINGS or a tensor."""
    future = asyncio.get_running_loop().create_future()
    if isinstance(target, ClassMatrix):
        return Job(pixels, target.data, future, classes_ready=target.ready)
    return Job(pixels, target, future)


# forward(pixels [N, 3, S, S] normalised on the device, jobs) -> per job its [n_j, C_j] cosines,
# or the error that job alone gets (e.g. labels an image-conditioned method cannot encode)
Forward = Callable[[torch.Tensor, list[Job]], list[torch.Tensor | Exception]]


class Lane:
    def __init__(
        self,
        kind: str,
        forward: Forward,
        config: BatchConfig,
        metrics: Metrics,
        pre: Preprocessing,
        device: torch.device,
    ) -> None:
        self.kind, self.forward, self.config, self.metrics = kind, forward, config, metrics
        self.preprocessing, self.device = pre, device
        self.normalise = Normalise(pre, device)
        self.stream = side_stream(device)  # CUDA: encode here while requests decode on the decode stream
        follow_default_stream(self.stream, device)  # once: weights and learner tensors written at load
        self.queue: deque[Job] = deque()
        self.queued = 0  # images in the queue
        self.wake = asyncio.Event()  # set by every submit: the lane's queue is not empty
        self.filled: asyncio.Future[None] | None = None  # while a batch waits to fill: resolved once full
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"lane-{kind}")
        self.batch_seconds = 0.01  # moving average, for Retry-After
        self.task: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(self._loop())

    async def submit(self, pixels: Pixels, target: Any) -> torch.Tensor:
        """[n, 3, S, S] uint8 -> [n, C] cosine similarities, after sharing a batch with others.
        `target`: a ClassMatrix, labels (conditioned lanes) or EMBEDDINGS."""
        n = len(pixels)
        if self.queued + n > self.config.max_queue:
            raise Overloaded(
                f"the {self.kind} queue holds {self.queued} images (max_queue_images="
                f"{self.config.max_queue}); retry later",
                retry_after_s=self._retry_after(),
            )
        job = new_job(pixels, target)
        self.queue.append(job)
        self._count(n)
        self.wake.set()
        if self.filled is not None and self.queued >= self.config.max_batch:
            _resolve(self.filled)
        try:
            return await job.future
        finally:
            if job in self.queue:  # cancelled (deadline) while still queued: give its place back
                self.queue.remove(job)
                self._count(-n)

    async def embed(self, pixels: Pixels) -> torch.Tensor:
        """[n, 3, S, S] uint8 -> [n, D] normalised image embeddings, from the same batched pass
        (shared with classification jobs) that yields cosines for the others."""
        if self.kind == "conditioned":  # its forward turns images into logits only
            raise ValueError("a conditioned lane computes logits, not image embeddings")
        return await self.submit(pixels, EMBEDDINGS)

    def _count(self, n: int) -> None:
        self.queued += n
        self.metrics.queue_depth.labels(lane=self.kind).inc(n)

    def _retry_after(self) -> int:
        batches = self.queued / self.config.max_batch
        return max(1, math.ceil(batches * self.batch_seconds))

    async def _loop(self) -> None:
        while True:
            while not self.queue:
                self.wake.clear()
                await self.wake.wait()
            await self._wait_to_fill(self.queue[0].enqueued + self.config.max_wait_s)
            jobs = self._take()
            try:
                if jobs:
                    await self._run(jobs)
            except Exception:  # never let one bad batch stop the lane
                log.exception("%s lane: batch failed", self.kind)

    async def _wait_to_fill(self, until: float) -> None:
        """Until the queue holds a full batch or `until`. One future and one timer per batch, woken
        by the submit that fills it: waking on every submit (an `asyncio.wait_for` each) cost the
        event loop more per request than the rest of the lane's bookkeeping (bench/overhead.py)."""
        remaining = until - time.monotonic()
        if self.queued >= self.config.max_batch or remaining <= 0:
            return
        loop = asyncio.get_running_loop()
        self.filled = loop.create_future()
        timer = loop.call_later(remaining, _resolve, self.filled)
        try:
            await self.filled
        finally:
            timer.cancel()
            self.filled = None

    def _take(self) -> list[Job]:
        jobs: list[Job] = []
        images = 0
        while self.queue and (not jobs or images + self.queue[0].size <= self.config.max_batch):
            job = self.queue.popleft()
            self._count(-job.size)
            if not job.future.done():
                jobs.append(job)
                images += job.size
        return jobs

    async def _run(self, jobs: list[Job]) -> None:
        started = time.monotonic()
        for job in jobs:
            self.metrics.stage_duration.labels(stage="queue").observe(started - job.enqueued)
        self.metrics.batch_size.labels(lane=self.kind).observe(sum(job.size for job in jobs))
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self.executor, self._forward, jobs)
        except Exception as error:  # the whole pass failed: every job in it gets the error
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        elapsed = time.monotonic() - started
        self.batch_seconds = 0.8 * self.batch_seconds + 0.2 * elapsed
        self.metrics.stage_duration.labels(stage="encode").observe(elapsed)
        for job, output in zip(jobs, outputs, strict=True):
            if job.future.done():
                continue
            if isinstance(output, Exception):
                job.future.set_exception(output)
            else:
                job.future.set_result(output)

    def _forward(self, jobs: list[Job]) -> list[torch.Tensor | Exception]:
        """On the lane thread and stream; the results copy at the end is the pass's one host sync."""
        with torch.no_grad(), on_stream(self.stream):
            # The device waits for these jobs' class matrices only (matrix stream); pixels: below.
            wait_for(self.stream, [job.classes_ready for job in jobs])
            hold_for(self.stream, [job.target for job in jobs if isinstance(job.target, torch.Tensor)])
            pixels = gather_pixels([job.pixels for job in jobs], self.device)  # [N, 3, S, S] uint8
            x = self.normalise(pixels)  # [N, 3, S, S] float
            return results_to_host(self.forward(x, jobs))  # per job [n, C] float32 on the CPU

    async def warm(self, pixels: Pixels, target: Any) -> None:
        """One forward pass on the lane's thread, outside the queue and the metrics."""
        job = new_job(pixels, target)
        await asyncio.get_running_loop().run_in_executor(self.executor, self._warm, [job])

    def _warm(self, jobs: list[Job]) -> list[torch.Tensor | Exception]:
        follow_default_stream(self.stream, self.device)  # start-up tensors, made on the default stream
        return self._forward(jobs)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
        for job in self.queue:
            if not job.future.done():
                job.future.cancel()
        self.queue.clear()
        self.executor.shutdown(wait=False, cancel_futures=True)
        # The forward holds a version's learner (its own image tower, or its text side): a request
        # that still holds the closed lane must not keep those weights in memory.
        self.forward = closed_forward


def per_job_cosines(features: torch.Tensor, jobs: list[Job]) -> list[torch.Tensor | Exception]:
    """[N, D] normalised features -> per job [n, D] @ [D, C] = [n, C] cosines, or for an
    EMBEDDINGS job its [n, D] rows as they are."""
    outputs: list[torch.Tensor | Exception] = []
    start = 0
    for job in jobs:
        rows = features[start : start + job.size]  # [n, D]
        outputs.append(rows if job.target is EMBEDDINGS else rows @ job.target.t())
        start += job.size
    return outputs


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def closed_forward(x: torch.Tensor, jobs: list[Job]) -> list[torch.Tensor | Exception]:
    raise RuntimeError("this lane is closed: its version was retired")


def stock_forward(encoder: ImageEncoder) -> Forward:
    return lambda x, jobs: per_job_cosines(encoder(x), jobs)


def custom_image_forward(learner: PromptLearner) -> Forward:
    return lambda x, jobs: per_job_cosines(learner.image_embeddings(x), jobs)


def conditioned_forward(learner: PromptLearner, logit_scale: float) -> Forward:
    """Jobs with the same labels go through learner.logits together; cosine = logits / scale."""

    def forward(x: torch.Tensor, jobs: list[Job]) -> list[torch.Tensor | Exception]:
        rows: dict[tuple[str, ...], list[int]] = {}
        starts, start = [], 0
        for j, job in enumerate(jobs):
            rows.setdefault(job.target, []).append(j)
            starts.append(start)
            start += job.size
        outputs: list[torch.Tensor | Exception] = [Invalid("no output")] * len(jobs)
        for labels, members in rows.items():
            # built on the device: an index made on the host would be a blocking copy per batch
            index = torch.cat(
                [torch.arange(starts[j], starts[j] + jobs[j].size, device=x.device) for j in members]
            )
            try:
                logits = learner.logits(x[index], list(labels)) / logit_scale  # [n, C]
            except ValueError as error:  # labels this method cannot encode (too long, ...)
                for j in members:
                    outputs[j] = Invalid(str(error))
                continue
            offset = 0
            for j in members:
                outputs[j] = logits[offset : offset + jobs[j].size]
                offset += jobs[j].size
        return outputs

    return forward


class Batcher:
    """The shared lane plus factories for the per-version lanes."""

    def __init__(
        self,
        encoder: ImageEncoder,
        pre: Preprocessing,
        device: torch.device,
        config: BatchConfig,
        metrics: Metrics,
    ) -> None:
        self.pre, self.device, self.config, self.metrics = pre, device, config, metrics
        self.encoder = encoder  # eager torch, CUDA graphs or ONNX Runtime (service.runtime)
        self.shared = Lane("shared", stock_forward(encoder), config, metrics, pre, device)

    def lane_for(self, learner: PromptLearner | None, logit_scale: float) -> Lane:
        if learner is None or not (learner.image_conditioned or learner.custom_image_encoder):
            return self.shared
        if learner.image_conditioned:
            return Lane(
                "conditioned",
                conditioned_forward(learner, logit_scale),
                self.config,
                self.metrics,
                self.pre,
                self.device,
            )
        return Lane("custom", custom_image_forward(learner), self.config, self.metrics, self.pre, self.device)

    async def close(self) -> None:
        await self.shared.close()
