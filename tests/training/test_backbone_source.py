"""`clipserve eval` and `export` find the backbone a checkpoint names: a weights file is loaded from
where it was trained from without --pretrained; once moved, --pretrained points at it; weights that
are not the checkpoint's are refused with a clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import save_file

from clipserve_cli import main
from models.backbone import build_backbone
from models.checkpoint import load_checkpoint, read_header
from training.learners import load_learner

TINY = "clipserve-tiny-vit"


def weights_file(path: Path, seed: int) -> Path:
    backbone = build_backbone(TINY, None, seed=seed)
    save_file({k: v.contiguous() for k, v in backbone.model.state_dict().items()}, str(path))
    return path


def test_eval_and_export_find_the_weights_the_checkpoint_was_trained_with(
    image_folder: Path, test_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = weights_file(tmp_path / "tiny-weights.safetensors", seed=3)
    run = tmp_path / "run"
    argv = [
        "train",
        "--data",
        str(image_folder),
        "--out",
        str(run),
        "--arch",
        TINY,
        "--pretrained",
        str(weights),
        "--shots",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--n-ctx",
        "4",
        "--num-workers",
        "0",
        "--no-progress",
    ]
    assert main(argv) == 0
    checkpoint = run / "seed_1" / "checkpoint.safetensors"
    assert read_header(checkpoint).provenance["backbone_file"] == str(weights.resolve())
    evaluate = ["eval", str(run), "--test", str(test_folder), "--num-workers", "0", "--no-plots"]
    assert main([*evaluate, "--out", str(tmp_path / "eval")]) == 0  # no --pretrained needed
    export = ["export", str(run / "seed_1"), "--no-onnx-check"]
    assert main([*export, "--out", str(tmp_path / "exported.safetensors")]) == 0
    assert (
        load_checkpoint(tmp_path / "exported.safetensors").header.backbone == read_header(checkpoint).backbone
    )
    capsys.readouterr()

    moved = Path(shutil.move(weights, tmp_path / "moved.safetensors"))
    assert main([*evaluate, "--out", str(tmp_path / "eval2")]) == 2
    error = capsys.readouterr().err
    assert (
        f"trained from {weights.resolve()}, which is not there any more" in error and "--pretrained" in error
    )
    assert main([*evaluate, "--out", str(tmp_path / "eval3"), "--pretrained", str(moved)]) == 0
    capsys.readouterr()

    other = weights_file(tmp_path / "other.safetensors", seed=4)
    assert main([*export, "--out", str(tmp_path / "x.safetensors"), "--pretrained", str(other)]) == 2
    error = capsys.readouterr().err
    assert "but the checkpoint was trained on" in error and read_header(checkpoint).backbone.weights in error
    assert not (tmp_path / "x.safetensors").exists()
    report = json.loads((tmp_path / "eval3" / "report.json").read_text())
    assert report["sets"]["test"]["images"] == 16
    assert (
        load_learner(checkpoint, pretrained=str(moved)).backbone.identity == read_header(checkpoint).backbone
    )
