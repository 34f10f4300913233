"""Two gloo processes, each with half of every global batch, end InfoNCE pretraining with the
same weights as one process with the whole batch (features are gathered, so every pair of the
global batch is a negative, and the gradients are summed exactly once). ProtoCLIP runs too; its
projection heads hold BatchNorm, whose statistics are per process (as with DDP without SyncBN),
so it is checked for running, not for equality."""

from __future__ import annotations

import multiprocessing
import os
import socket
from pathlib import Path

import pytest
import torch

from models.backbone import build_backbone
from tests.training.pretrain.test_pretrain import TINY, fresh_model, tiny_config
from training.distributed import DistContext, init_from_env, shutdown
from training.pretrain.loop import PretrainOptions, pretrain
from training.pretrain.pool import render_pool
from training.state import STATE_FILE
from training.world import World

WORLD_SIZE = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _train(method: str, out: Path, ctx: DistContext) -> None:
    torch.set_num_threads(1)
    config = tiny_config(method=method, episodes=2)
    pool = render_pool(World(), build_backbone(TINY, None), "train", config.pool_size)
    _, model = fresh_model(config)
    pretrain(model, pool, config, ctx, PretrainOptions(out, progress=False))


def _worker(rank: int, method: str, out: str, port: int) -> None:
    os.environ.update(
        {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(WORLD_SIZE),
         "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )  # fmt: skip
    ctx = init_from_env("cpu")
    try:
        _train(method, Path(out), ctx)
    finally:
        shutdown(ctx)


def _run_two(method: str, out: Path) -> dict[str, torch.Tensor]:
    context = multiprocessing.get_context("spawn")
    port = _free_port()
    workers = [context.Process(target=_worker, args=(r, method, str(out), port)) for r in range(WORLD_SIZE)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=180)
    assert [w.exitcode for w in workers] == [0] * WORLD_SIZE
    return torch.load(out / STATE_FILE, weights_only=True)["model"]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    two = _run_two("infonce", tmp_path / "two")
    _train("infonce", tmp_path / "one", DistContext())
    one = torch.load(tmp_path / "one" / STATE_FILE, weights_only=True)["model"]
    _, initial = fresh_model(tiny_config(method="infonce"))
    moved = max(float((one[k] - v).abs().max()) for k, v in initial.state_dict().items())
    assert moved > 1e-3  # it learned; what follows is rounding only
    for name, value in one.items():
        torch.testing.assert_close(
            _comparable(name, two[name]), _comparable(name, value), atol=1e-5, rtol=1e-4
        )


def _comparable(name: str, value: torch.Tensor) -> torch.Tensor:
    """Attention key biases have a zero gradient (softmax ignores a constant per query), so AdamW
    turns their rounding noise into lr-sized steps that differ between any two runs; leave them out."""
    if name.endswith("attn.in_proj_bias"):
        q, _, v = value.chunk(3)
        return torch.cat([q, v])
    return value


@pytest.mark.slow
def test_protoclip_runs_under_two_processes(tmp_path: Path) -> None:
    state = _run_two("protoclip", tmp_path / "proto")
    assert "image_head.0.weight" in state and all(torch.isfinite(v.float()).all() for v in state.values())
