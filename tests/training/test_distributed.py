"""Two or three gloo processes, each with its share of every global batch, end with the same learned
context as one process with the whole batch, including a batch where one rank drops an unreadable
image."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import socket
from pathlib import Path

import pytest
import torch

from models.checkpoint import load_checkpoint
from tests.training.conftest import tiny_request
from training.distributed import DistContext, init_from_env, shutdown
from training.learners import load_learner
from training.pipeline import run_training


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worker(rank: int, world_size: int, data: str, out: str, port: int) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
         "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )  # fmt: skip
    ctx = init_from_env("cpu")
    try:
        run_training(_request(Path(data), Path(out)), ctx)
    finally:
        shutdown(ctx)


def _request(data: Path, out: Path):  # type: ignore[no-untyped-def]
    # All 25 files (one unreadable) in global batches of 6: ranks get 3 + 3 (2 + 2 + 2 with three), one
    # fewer where the bad one falls, which the sum-then-divide reduction must weigh as one process does.
    return tiny_request(data, out, shots=None, hparams={"epochs": 2, "batch_size": 6, "lr": 0.05})


@pytest.mark.parametrize("world_size", [2, 3])
def test_gloo_processes_match_one_process(
    world_size: int, image_folder: Path, tmp_path: Path, process_context: multiprocessing.context.BaseContext
) -> None:
    port = _free_port()
    workers = [
        process_context.Process(
            target=_worker, args=(rank, world_size, str(image_folder), str(tmp_path / "two"), port)
        )
        for rank in range(world_size)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=180)
    assert [w.exitcode for w in workers] == [0] * world_size
    one, _ = run_training(_request(image_folder, tmp_path / "one"), DistContext())
    two = load_checkpoint(tmp_path / "two" / "checkpoint.safetensors").tensors["ctx"]
    reference = load_checkpoint(one).tensors["ctx"]
    assert (reference - _initial_context(one)).abs().max() > 1e-2  # it learned; below is rounding only
    torch.testing.assert_close(two, reference, atol=1e-5, rtol=1e-4)


def _initial_context(checkpoint: Path) -> torch.Tensor:
    learner = load_learner(checkpoint)
    torch.manual_seed(1)  # the request's seed, as in pipeline.build_learner
    return type(learner)(learner.backbone, learner.classnames, learner.config).ctx.detach()
