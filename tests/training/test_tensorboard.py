"""What a user watches: TensorBoard event files with the loss, learning rate, validation accuracy and
step time that metrics.jsonl records (a resumed run without the cut-short epoch twice; pretraining:
tests/training/pretrain/test_conventions.py), a clear error when the tensorboard package is
missing, and a terminal that keeps one line per finished epoch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from clipserve_cli import main
from models.backbone import Backbone
from tests.training.conftest import tiny_request
from training.distributed import DistContext
from training.loop import StepInfo
from training.metrics import read_metrics
from training.pipeline import run_training
from training.runlog import TENSORBOARD_MISSING


class Killed(Exception):
    pass


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def records(run_dir: Path, event: str) -> list[dict[str, Any]]:
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if r["event"] == event]


def test_training_writes_what_metrics_records_and_a_resume_does_not_repeat_it(
    image_folder: Path, test_folder: Path, tmp_path: Path, tiny_backbone: Backbone
) -> None:
    request = tiny_request(
        image_folder,
        tmp_path / "run",
        val=str(test_folder),
        tensorboard=str(tmp_path / "tb"),
        hparams={"epochs": 3, "batch_size": 4},
    )

    def kill(info: StepInfo) -> None:
        if (info.epoch, info.step) == (1, 2):
            raise Killed

    with pytest.raises(Killed):
        run_training(request, DistContext(), step_hook=kill, backbone=tiny_backbone)
    run_training(request, DistContext(), backbone=tiny_backbone)
    board = scalars(tmp_path / "tb")
    assert {
        "train/loss",
        "train/lr",
        "train/step_seconds",
        "train/images_per_s",
        "train/epoch_loss",
        "train/val_accuracy",
    } <= set(board)
    epochs, validations = records(tmp_path / "run", "epoch"), records(tmp_path / "run", "validation")
    assert [v for _, v in board["train/epoch_loss"]] == pytest.approx([r["loss"] for r in epochs])
    assert [v for _, v in board["train/val_accuracy"]] == pytest.approx([r["accuracy"] for r in validations])
    steps = [s for s, _ in board["train/loss"]]
    assert steps == list(range(1, 13))  # 3 epochs of 4 steps, each once, the killed epoch's purged
    assert [v for _, v in board["train/loss"]] == pytest.approx(
        [r["loss"] for r in records(tmp_path / "run", "step")]
    )


def test_a_missing_tensorboard_package_is_a_clear_error_before_any_work(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` raises ImportError
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    argv = [
        "train",
        "--data",
        str(image_folder),
        "--out",
        str(tmp_path / "run"),
        "--tensorboard",
        str(tmp_path / "tb"),
        "--arch",
        "clipserve-tiny-vit",
        "--pretrained",
        "random",
    ]
    assert main(argv) == 2
    assert TENSORBOARD_MISSING in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    # Without --tensorboard the package is not needed.
    request = tiny_request(image_folder, tmp_path / "plain", hparams={"epochs": 1, "batch_size": 8})
    run_training(request, DistContext())


def test_the_terminal_keeps_one_line_per_finished_epoch(
    image_folder: Path,
    test_folder: Path,
    tmp_path: Path,
    tiny_backbone: Backbone,
    capsys: pytest.CaptureFixture[str],
) -> None:
    request = tiny_request(
        image_folder, tmp_path, progress=True, val=str(test_folder), hparams={"epochs": 2, "batch_size": 4}
    )
    run_training(request, DistContext(), backbone=tiny_backbone)
    lines = [line.split("\r")[-1] for line in capsys.readouterr().err.split("\n") if "epoch" in line]
    assert len(lines) == 2, lines
    for number, line in enumerate(lines, 1):
        assert f"train epoch {number}/2" in line and "100%" in line
        assert "loss=" in line and "lr=" in line and "val_acc=" in line
