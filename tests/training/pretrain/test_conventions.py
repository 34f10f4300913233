"""Pretraining shares the training package's conventions: its state record (a finished run rerun as
it is reports its real final loss, more episodes continue it on a re-planned schedule, said so,
and a run killed while it grows resumes to the weights of an uninterrupted one) and its run log
(TensorBoard next to metrics.jsonl)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.training.pretrain.test_pretrain import fresh_model, tiny_config
from tests.training.test_tensorboard import records, scalars
from training.distributed import DistContext
from training.metrics import read_metrics
from training.pretrain.loop import PretrainOptions, pretrain
from training.pretrain.pool import Pool
from training.pretrain.steps import learning_rate
from training.state import STATE_FILE, StateMismatchError


class Killed(Exception):
    pass


def run(pool: Pool, out: Path, episodes: int, hook: object = None) -> tuple[object, dict]:
    config = tiny_config(method="infonce", episodes=episodes)
    _, model = fresh_model(config)
    options = PretrainOptions(out, progress=False, log_every=1, step_hook=hook)  # type: ignore[arg-type]
    result = pretrain(model, pool, config, DistContext(), options)
    return result, model.state_dict()


def test_a_finished_pretraining_rerun_as_it_is_reports_its_real_final_loss(
    pool: Pool, tmp_path: Path
) -> None:
    first, _ = run(pool, tmp_path, 2)
    again, _ = run(pool, tmp_path, 2)
    episodes = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["event"] == "episode"]
    assert again.already_complete and again.episodes_run == 0  # type: ignore[attr-defined]
    assert again.final_loss == first.final_loss == episodes[-1]["loss"]  # type: ignore[attr-defined]
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    assert (state["unit"], state["completed"], state["planned"]) == ("episode", 2, [2])


def test_more_episodes_continue_on_a_replanned_schedule_and_resume_exactly(
    pool: Pool, tmp_path: Path
) -> None:
    for out in ("straight", "killed"):
        run(pool, tmp_path / out, 2)
    grown, straight = run(pool, tmp_path / "straight", 3)
    assert grown.episodes_run == 1 and "re-planned from 2 to 3 episodes" in grown.notes[0]  # type: ignore[attr-defined]
    steps = [r for r in read_metrics(tmp_path / "straight" / "metrics.jsonl") if r["event"] == "step"]
    config = tiny_config(method="infonce", episodes=3)
    per_episode = config.steps_per_episode
    assert [r["lr"] for r in steps[2 * per_episode :]] == pytest.approx(
        [learning_rate(config, 2 * per_episode + s) for s in range(per_episode)]
    )

    def kill(step: int, loss: float) -> None:
        if step == 2 * per_episode + 1:  # inside the added episode
            raise Killed

    with pytest.raises(Killed):
        run(pool, tmp_path / "killed", 3, kill)
    resumed_result, resumed = run(pool, tmp_path / "killed", 3)
    assert resumed_result.episodes_run == 1  # type: ignore[attr-defined]
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name
    with pytest.raises(StateMismatchError, match="cannot shrink"):
        run(pool, tmp_path / "killed", 2)


def test_pretraining_writes_its_losses_and_schedule_to_tensorboard(pool: Pool, tmp_path: Path) -> None:
    config = tiny_config(method="protoclip", episodes=2)
    _, model = fresh_model(config)
    options = PretrainOptions(tmp_path / "run", progress=False, log_every=1, tensorboard=tmp_path / "tb")
    pretrain(model, pool, config, DistContext(), options)
    board = scalars(tmp_path / "tb")
    expected = {"loss", "lr", "clip", "proto", "step_seconds", "episode_loss", "logit_scale"}
    assert {f"pretrain/{name}" for name in expected} <= set(board)
    episodes = records(tmp_path / "run", "episode")
    assert [v for _, v in board["pretrain/episode_loss"]] == pytest.approx([r["loss"] for r in episodes])
    assert [s for s, _ in board["pretrain/lr"]] == list(range(1, 2 * config.steps_per_episode + 1))
