"""Several gloo processes, each with its share of every global batch, end InfoNCE pretraining with
the same weights as one process with the whole batch (features are gathered, so every pair of the
global batch is a negative, and the gradients are summed exactly once), also when the batch does
not divide evenly over the processes (5 rows on 2, 7 on 3: shares differ by a row, the gathers
pad). ProtoCLIP runs too; its projection heads hold BatchNorm, whose statistics are per process
(as with DDP without SyncBN), so it is checked for running, not for equality. A batch too small to
give every process its rows is refused with a message."""

from __future__ import annotations

import multiprocessing.context
import os
import socket
from pathlib import Path

import pytest
import torch

from models.backbone import build_backbone
from tests.training.pretrain.test_pretrain import TINY, fresh_model, tiny_config
from training.distributed import DistContext, init_from_env, shutdown
from training.pretrain.episodes import episode_chunks
from training.pretrain.loop import PretrainOptions, pretrain
from training.pretrain.pool import render_pool
from training.pretrain.steps import check_batch_split
from training.state import STATE_FILE
from training.world import World


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _train(method: str, batch_size: int, out: Path, ctx: DistContext) -> None:
    torch.set_num_threads(1)
    # ProtoCLIP's second episode is its first with prototypes; InfoNCE needs one episode.
    config = tiny_config(method=method, episodes=2 if method == "protoclip" else 1, batch_size=batch_size,
                         episode_size=40, pool_size=40)  # fmt: skip
    pool = render_pool(World(), build_backbone(TINY, None), "train", config.pool_size)
    _, model = fresh_model(config)
    pretrain(model, pool, config, ctx, PretrainOptions(out, progress=False))


def _worker(rank: int, world_size: int, method: str, batch_size: int, out: str, port: int) -> None:
    os.environ.update(
        {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
         "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )  # fmt: skip
    ctx = init_from_env("cpu")
    try:
        _train(method, batch_size, Path(out), ctx)
    finally:
        shutdown(ctx)


def _run(
    context: multiprocessing.context.BaseContext, world_size: int, method: str, batch_size: int, out: Path
) -> dict[str, torch.Tensor]:
    port = _free_port()
    workers = [
        context.Process(target=_worker, args=(rank, world_size, method, batch_size, str(out), port))
        for rank in range(world_size)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [w.exitcode for w in workers] == [0] * world_size
    return torch.load(out / STATE_FILE, weights_only=True)["tensors"]


@pytest.mark.slow
@pytest.mark.parametrize(("world_size", "batch_size"), [(2, 5), (3, 7)])
def test_uneven_shares_of_the_batch_match_one_process(
    world_size: int, batch_size: int, tmp_path: Path, process_context: multiprocessing.context.BaseContext
) -> None:
    several = _run(process_context, world_size, "infonce", batch_size, tmp_path / "several")
    _train("infonce", batch_size, tmp_path / "one", DistContext())
    one = torch.load(tmp_path / "one" / STATE_FILE, weights_only=True)["tensors"]
    _, initial = fresh_model(tiny_config(method="infonce"))
    moved = max(float((one[k] - v).abs().max()) for k, v in initial.state_dict().items())
    assert moved > 1e-3  # it learned; what follows is rounding only
    for name, value in one.items():
        assert_equal_up_to_adam_noise(name, several[name], value)


def assert_equal_up_to_adam_noise(name: str, got: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal to 5e-5, except a few in a million elements: AdamW divides each update by the root of
    its squared gradients, so an element whose gradient is nearly zero turns rounding noise (the
    processes add their shares in another order) into up to an lr-sized step. A wrong share of the
    batch moves most elements; this lets through at most 1e-5 of a tensor, by less than 2 lr."""
    got, expected = _comparable(name, got), _comparable(name, expected)
    outside = ~torch.isclose(got, expected, atol=5e-5, rtol=1e-4)
    assert int(outside.sum()) <= expected.numel() * 1e-5, (name, int(outside.sum()))
    assert float((got - expected).abs().max()) < 2 * tiny_config().lr, name


def _comparable(name: str, value: torch.Tensor) -> torch.Tensor:
    """Attention key biases have a zero gradient (softmax ignores a constant per query), so AdamW
    turns their rounding noise into lr-sized steps that differ between any two runs; leave them out."""
    if name.endswith("attn.in_proj_bias"):
        q, _, v = value.chunk(3)
        return torch.cat([q, v])
    return value


@pytest.mark.slow
def test_protoclip_runs_under_three_processes_with_uneven_shares(
    tmp_path: Path, process_context: multiprocessing.context.BaseContext
) -> None:
    state = _run(process_context, 3, "protoclip", 7, tmp_path / "proto")
    assert "image_head.0.weight" in state and all(torch.isfinite(v.float()).all() for v in state.values())


def test_a_batch_that_leaves_a_process_too_few_rows_is_refused() -> None:
    check_batch_split(tiny_config(method="infonce", batch_size=3), 3)  # one row each is enough
    check_batch_split(tiny_config(method="protoclip", batch_size=7), 3)  # 3, 2, 2
    with pytest.raises(ValueError, match="needs 2 per process: use --batch-size 6 or more"):
        check_batch_split(tiny_config(method="protoclip", batch_size=5), 3)
    with pytest.raises(ValueError, match="leaves a process 0 row"):
        check_batch_split(tiny_config(method="infonce", batch_size=2), 3)


def test_episode_chunks_give_every_process_a_row() -> None:
    rows = torch.arange(64)
    assert [len(c) for c in episode_chunks(rows, 7, 3)] == [7] * 8 + [8]  # the last row joins a chunk
    assert [len(c) for c in episode_chunks(rows, 7, 1)] == [7] * 9 + [1]
    assert torch.equal(torch.cat(episode_chunks(rows, 7, 3)), rows)
