"""Runs that can grow and say where they stand: a finished run rerun as it is reports its real final
loss; more epochs continue it, the schedule re-planned and said so; a run cannot shrink; and a
run killed (SIGKILL) while it grows, validating and keeping its best epoch, resumes to exactly
what an uninterrupted one gives."""

from __future__ import annotations

import json
import math
import multiprocessing.context
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from clipserve_cli import main
from models.backbone import Backbone
from models.checkpoint import load_checkpoint, read_header
from models.prompts import METHODS
from tests.training.conftest import tiny_request
from tests.training.test_loop import TwoStageCoOp
from training.distributed import DistContext
from training.metrics import read_metrics
from training.pipeline import TrainRequest, run_training
from training.state import StateMismatchError

TINY_CLI = ["--arch", "clipserve-tiny-vit", "--pretrained", "random", "--num-workers", "0", "--no-progress"]


def records(run_dir: Path, event: str) -> list[dict[str, Any]]:
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if r["event"] == event]


def dassl_lr(epoch: int, epochs: int, base: float = 0.002, warmup: int = 1, warmup_lr: float = 1e-5) -> float:
    return warmup_lr if epoch < warmup else base * (1 + math.cos(math.pi * (epoch - warmup) / epochs)) / 2


def test_a_finished_run_rerun_as_it_is_says_so_with_its_real_final_loss(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "train",
        "--data",
        str(image_folder),
        "--out",
        str(tmp_path),
        "--shots",
        "2",
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--n-ctx",
        "4",
        *TINY_CLI,
    ]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    tensors = load_checkpoint(tmp_path / "seed_1" / "checkpoint.safetensors").tensors["ctx"]
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    last_epoch_loss = records(tmp_path / "seed_1", "epoch")[-1]["loss"]
    assert (first["status"], again["status"]) == ("trained", "already complete")
    assert again["epochs_run"] == 0 and again["final_loss"] == first["final_loss"] == last_epoch_loss
    assert torch.equal(
        load_checkpoint(tmp_path / "seed_1" / "checkpoint.safetensors").tensors["ctx"], tensors
    )
    assert len(records(tmp_path / "seed_1", "epoch")) == 2


def test_more_epochs_continue_a_finished_run_on_a_replanned_schedule(
    image_folder: Path, tmp_path: Path, tiny_backbone: Backbone
) -> None:
    run_training(
        tiny_request(image_folder, tmp_path, hparams={"epochs": 2, "batch_size": 4}),
        DistContext(),
        backbone=tiny_backbone,
    )
    _, result = run_training(
        tiny_request(image_folder, tmp_path, hparams={"epochs": 4, "batch_size": 4}),
        DistContext(),
        backbone=tiny_backbone,
    )
    assert result.epochs_run == 2 and not result.already_complete
    assert result.notes == [
        "re-planned from 2 to 4 epochs after 2 finished: the learning-rate schedule follows the new plan "
        "from epoch 3 on"
    ]
    lrs = [r["lr"] for r in records(tmp_path, "epoch")]
    assert lrs == pytest.approx([dassl_lr(0, 2), dassl_lr(1, 2), dassl_lr(2, 4), dassl_lr(3, 4)])
    assert [r["note"] for r in records(tmp_path, "replan")] == result.notes
    assert json.loads((tmp_path / "config.json").read_text())["resolved"]["hparams"]["train"]["epochs"] == 4
    with pytest.raises(StateMismatchError, match="cannot shrink"):
        run_training(
            tiny_request(image_folder, tmp_path, hparams={"epochs": 3, "batch_size": 4}),
            DistContext(),
            backbone=tiny_backbone,
        )
    # Refused before anything was written: config.json still describes the 4-epoch run.
    assert json.loads((tmp_path / "config.json").read_text())["resolved"]["hparams"]["train"]["epochs"] == 4


def test_a_multi_stage_run_grows_its_last_stage_only(
    image_folder: Path, tmp_path: Path, tiny_backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(METHODS, TwoStageCoOp.method, TwoStageCoOp)
    request = tiny_request(
        image_folder, tmp_path, method=TwoStageCoOp.method, hparams={"epochs": 1, "batch_size": 8}
    )
    run_training(request, DistContext(), backbone=tiny_backbone)
    request.hparams["epochs"] = 2
    _, result = run_training(request, DistContext(), backbone=tiny_backbone)
    assert result.epochs_run == 1
    assert result.notes[0] == "stage 'first' finished with 1 epochs and is not re-run"
    assert [(r["stage"], r["epoch"]) for r in records(tmp_path, "epoch")] == [
        ("first", 0),
        ("second", 0),
        ("second", 1),
    ]


def _grow(request: TrainRequest, sleep: float) -> None:
    torch.set_num_threads(1)
    run_training(request, DistContext(), step_hook=lambda info: time.sleep(sleep))


def growing_request(data: Path, test: Path, out: Path, epochs: int) -> TrainRequest:
    hparams = {"epochs": epochs, "batch_size": 4, "lr": 0.05}
    learner = {"n_ctx": 4, "class_specific": True}  # learns the colours, so validation moves
    return tiny_request(data, out, val=str(test), keep="best", hparams=hparams, learner=learner)


def test_a_run_sigkilled_while_it_grows_resumes_to_the_uninterrupted_result(
    image_folder: Path,
    test_folder: Path,
    tmp_path: Path,
    tiny_backbone: Backbone,
    process_context: multiprocessing.context.BaseContext,
) -> None:
    for out in (tmp_path / "straight", tmp_path / "killed"):
        run_training(
            growing_request(image_folder, test_folder, out, 2), DistContext(), backbone=tiny_backbone
        )
    straight, _ = run_training(
        growing_request(image_folder, test_folder, tmp_path / "straight", 5),
        DistContext(),
        backbone=tiny_backbone,
    )
    grow = growing_request(image_folder, test_folder, tmp_path / "killed", 5)
    child = process_context.Process(target=_grow, args=(grow, 0.05))
    child.start()
    state, deadline = tmp_path / "killed" / "state.pt", time.monotonic() + 60
    while torch.load(state, weights_only=True)["completed"] < 3:
        assert child.is_alive() and time.monotonic() < deadline, "the training process ended early"
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    child.join()
    assert child.exitcode == -signal.SIGKILL
    resumed, result = run_training(grow, DistContext(), backbone=tiny_backbone)
    assert 0 < result.epochs_run < 3 and result.best is not None
    assert torch.equal(load_checkpoint(straight).tensors["ctx"], load_checkpoint(resumed).tensors["ctx"])
    for event in ("epoch", "validation"):
        kept = ("epoch", "loss", "lr", "accuracy", "best_epoch", "best_accuracy")
        expected = [{k: r.get(k) for k in kept} for r in records(tmp_path / "straight", event)]
        assert [{k: r.get(k) for k in kept} for r in records(tmp_path / "killed", event)] == expected
    assert read_header(resumed).provenance["training"] == read_header(straight).provenance["training"]
