"""The one training loop on the tiny CLIP: it trains, records metrics, skips bad images, caches
features when it may, resumes exactly, refuses a foreign state, and runs multi-stage learners."""

from __future__ import annotations

import json
import math
import multiprocessing
import multiprocessing.context
import os
import signal
import time
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from models.backbone import Backbone
from models.checkpoint import load_checkpoint
from models.prompts import METHODS, CoOp, CoOpConfig
from tests.training.conftest import tiny_request
from training.data.batches import epoch_batches
from training.distributed import DistContext
from training.loop import StepInfo
from training.metrics import read_metrics
from training.pipeline import TrainRequest, run_training
from training.state import StateMismatchError


class SimulatedKill(Exception):
    pass


def test_train_writes_a_servable_checkpoint_and_metrics(
    image_folder: Path, tmp_path: Path, tiny_backbone: Backbone
) -> None:
    request = tiny_request(image_folder, tmp_path / "run", shots=None)  # all images, the corrupt one too
    path, result = run_training(request, DistContext(), backbone=tiny_backbone)
    checkpoint = load_checkpoint(path, expected_backbone=tiny_backbone.identity)
    assert checkpoint.header.method == "coop"
    assert checkpoint.class_embeddings is not None and checkpoint.class_embeddings.shape == (4, 64)
    assert set(checkpoint.tensors) == {"ctx"}  # learned tensors only, never the backbone
    assert result.epochs_run == 2 and result.steps == 12 and not result.used_cached_features
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    epochs = [r for r in records if r["event"] == "epoch"]
    assert [r["lr"] for r in epochs] == [1e-5, 0.002]  # warmup epoch, then the base lr
    corrupt = [
        i
        for i, (p, _) in enumerate(json.loads((tmp_path / "run" / "split.json").read_text())["images"])
        if p.endswith("corrupt.jpg")
    ]
    for epoch, record in enumerate(epochs):  # 25 files, 6 batches of 4 (last dropped), minus the corrupt one
        used = {i for batch in epoch_batches(25, 4, request.seed, epoch) for i in batch}
        assert record["images"] == 24 - len(used & set(corrupt))
    skipped = [r for r in records if r["event"] == "skipped_image"]
    assert len(skipped) == 1 and skipped[0]["path"].endswith("corrupt.jpg")
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["classes"] == ["blue_square", "green_square", "red_square", "yellow_square"]


def test_killed_run_resumes_to_exactly_the_uninterrupted_result(
    image_folder: Path, tmp_path: Path, tiny_backbone: Backbone
) -> None:
    hparams = {"epochs": 3, "batch_size": 4}
    full, _ = run_training(
        tiny_request(image_folder, tmp_path / "full", hparams=hparams), DistContext(), backbone=tiny_backbone
    )

    def kill_in_second_epoch(info: StepInfo) -> None:
        if (info.epoch, info.step) == (1, 2):
            raise SimulatedKill

    killed = tiny_request(image_folder, tmp_path / "killed", hparams=hparams)
    with pytest.raises(SimulatedKill):
        run_training(killed, DistContext(), step_hook=kill_in_second_epoch, backbone=tiny_backbone)
    assert not (tmp_path / "killed" / "checkpoint.safetensors").exists()
    resumed, result = run_training(killed, DistContext(), backbone=tiny_backbone)
    assert result.epochs_run == 2  # epochs 1 and 2; epoch 0 came from the state file
    assert torch.equal(load_checkpoint(full).tensors["ctx"], load_checkpoint(resumed).tensors["ctx"])
    losses = [
        [r["loss"] for r in read_metrics(p.parent / "metrics.jsonl") if r["event"] == "epoch"]
        for p in (full, resumed)
    ]
    assert losses[0] == losses[1]  # the cut-short epoch's records were dropped on resume


def _train_slowly(request: TrainRequest) -> None:
    torch.set_num_threads(1)
    run_training(request, DistContext(), step_hook=lambda info: time.sleep(0.05))


def test_sigkilled_process_resumes_to_exactly_the_uninterrupted_result(
    image_folder: Path,
    tmp_path: Path,
    tiny_backbone: Backbone,
    process_context: multiprocessing.context.BaseContext,
) -> None:
    hparams = {"epochs": 4, "batch_size": 4}
    killed = tiny_request(image_folder, tmp_path / "killed", hparams=hparams)
    child = process_context.Process(target=_train_slowly, args=(killed,))
    child.start()
    state = tmp_path / "killed" / "state.pt"
    deadline = time.monotonic() + 60
    while not (state.exists() and torch.load(state, weights_only=True)["completed"] >= 2):
        assert child.is_alive() and time.monotonic() < deadline, "the training process ended early"
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    child.join()
    assert child.exitcode == -signal.SIGKILL
    resumed, result = run_training(killed, DistContext(), backbone=tiny_backbone)
    assert 0 < result.epochs_run < 4
    full, _ = run_training(
        tiny_request(image_folder, tmp_path / "full", hparams=hparams), DistContext(), backbone=tiny_backbone
    )
    assert torch.equal(load_checkpoint(full).tensors["ctx"], load_checkpoint(resumed).tensors["ctx"])


def test_resume_refuses_a_state_from_other_settings(
    image_folder: Path, tmp_path: Path, tiny_backbone: Backbone
) -> None:
    run_training(
        tiny_request(image_folder, tmp_path / "run", hparams={"epochs": 1, "batch_size": 4}),
        DistContext(),
        backbone=tiny_backbone,
    )
    other = tiny_request(image_folder, tmp_path / "run", hparams={"epochs": 1, "batch_size": 4, "lr": 0.1})
    with pytest.raises(StateMismatchError, match="different settings"):
        run_training(other, DistContext(), backbone=tiny_backbone)


def test_cached_features_give_the_same_result_as_images(
    image_folder: Path, tmp_path: Path, tiny_backbone: Backbone
) -> None:
    hparams = {"epochs": 2, "batch_size": 4, "augment": "none"}
    paths, results = [], []
    for cache in (True, False):
        request = tiny_request(image_folder, tmp_path / str(cache), hparams=hparams, cache_features=cache)
        path, result = run_training(request, DistContext(), backbone=tiny_backbone)
        paths.append(path)
        results.append(result)
    assert results[0].used_cached_features and not results[1].used_cached_features
    cached, streamed = (load_checkpoint(p).tensors["ctx"] for p in paths)
    torch.testing.assert_close(cached, streamed, atol=1e-6, rtol=1e-5)


class TwoStageCoOp(CoOp):
    """A stand-in for SHIP: two stages through the interface's stage hook."""

    method = "two-stage-test"
    training_stages: ClassVar[tuple[str, ...]] = ("first", "second")
    entered: ClassVar[list[str]] = []

    def set_stage(self, stage: str) -> None:
        super().set_stage(stage)
        type(self).entered.append(stage)


def test_multi_stage_learners_run_each_stage_with_its_own_epochs(
    image_folder: Path, tmp_path: Path, tiny_backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(METHODS, TwoStageCoOp.method, TwoStageCoOp)
    TwoStageCoOp.entered.clear()
    request = tiny_request(
        image_folder, tmp_path / "run", method=TwoStageCoOp.method, hparams={"epochs": 1, "batch_size": 8}
    )
    _, result = run_training(request, DistContext(), backbone=tiny_backbone)
    assert TwoStageCoOp.entered == ["first", "second"]
    assert result.epochs_run == 2
    stages = [r["stage"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["event"] == "epoch"]
    assert stages == ["first", "second"]


def test_a_per_step_schedule_sets_the_lr_at_every_step(
    image_folder: Path, tmp_path: Path, tiny_backbone: Backbone
) -> None:
    hparams = {"epochs": 2, "batch_size": 4, "warmup_epochs": 0, "schedule_unit": "step"}
    request = tiny_request(image_folder, tmp_path / "run", hparams=hparams)
    run_training(request, DistContext(), backbone=tiny_backbone)
    steps = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["event"] == "step"]
    total = len(steps)  # 16 images (4 shots x 4 classes) in batches of 4, twice
    assert total == 8
    expected = [0.002 * (1 + math.cos(math.pi * t / total)) / 2 for t in range(total)]
    assert [r["lr"] for r in steps] == pytest.approx(expected)


def test_gradient_clipping_bounds_each_update(
    image_folder: Path, tmp_path: Path, tiny_backbone: Backbone
) -> None:
    hparams = {
        "epochs": 1,
        "batch_size": 4,
        "warmup_epochs": 0,
        "lr": 1.0,
        "momentum": 0.0,
        "weight_decay": 0.0,
    }
    moved = {}
    for clip in (None, 1e-4):
        request = tiny_request(image_folder, tmp_path / str(clip), hparams={**hparams, "max_grad_norm": clip})
        path, _ = run_training(request, DistContext(), backbone=tiny_backbone)
        torch.manual_seed(request.seed)
        initial = CoOp(
            tiny_backbone, load_checkpoint(path).header.classnames, CoOpConfig(n_ctx=4)
        ).ctx.detach()
        moved[clip] = float((load_checkpoint(path).tensors["ctx"] - initial).norm())
    assert moved[1e-4] <= 4 * 1e-4 * 1.0001  # 4 steps of lr 1 x gradient norm <= 1e-4
    assert moved[None] > 100 * moved[1e-4]
