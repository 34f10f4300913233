"""The whole path through the command line on the tiny CLIP: train two seeds, evaluate them,
export one with its report and ONNX encoder, load the export and get the same predictions."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from clipserve_cli import COMMANDS, main
from models.backbone import Backbone
from models.checkpoint import load_checkpoint
from training.data import load_dataset
from training.data.dataset import EvalImages, collate
from training.data.transforms import eval_transform
from training.evaluate import evaluate
from training.learners import load_learner


@pytest.mark.parametrize("command", ["train", "eval", "export"])
def test_every_option_is_explained_in_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    importlib.import_module(COMMANDS[command][0]).add_arguments(parser)
    assert all(action.help for action in parser._actions), [a.dest for a in parser._actions if not a.help]
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0 and "--out" in capsys.readouterr().out


def test_train_eval_export_then_serve_the_same_predictions(
    image_folder: Path,
    test_folder: Path,
    tmp_path: Path,
    tiny_backbone: Backbone,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run, report_dir, export = tmp_path / "run", tmp_path / "eval", tmp_path / "export"
    tiny = ["--arch", "clipserve-tiny-vit", "--pretrained", "random", "--num-workers", "0"]
    schedule = [
        "--shots",
        "4",
        "--seeds",
        "1",
        "2",
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--n-ctx",
        "4",
        "--no-progress",
    ]
    assert main(["train", "--data", str(image_folder), "--out", str(run), *schedule, *tiny]) == 0
    assert sorted(p.parent.name for p in run.glob("seed_*/checkpoint.safetensors")) == ["seed_1", "seed_2"]
    assert (
        main(["eval", str(run), "--test", str(test_folder), "--out", str(report_dir), "--num-workers", "0"])
        == 0
    )
    report = json.loads((report_dir / "report.json").read_text())
    assert len(report["checkpoints"]) == 2 and report["sets"]["test"]["images"] == 16
    assert (report_dir / "curves.png").is_file() and (report_dir / "report.md").is_file()
    onnx_path = export / "encoder.onnx"
    assert main(["export", str(run / "seed_1"), "--out", str(export / "model.safetensors"),
                 "--report", str(report_dir / "report.json"), "--onnx", str(onnx_path)]) == 0  # fmt: skip
    capsys.readouterr()

    exported = load_checkpoint(export / "model.safetensors", expected_backbone=tiny_backbone.identity)
    assert exported.header.metrics["summary"] == report["summary"]
    assert exported.header.provenance["onnx"]["max_abs_difference_vs_torch"] < 1e-3
    data = load_dataset(test_folder)
    trained = evaluate(load_learner(run / "seed_1" / "checkpoint.safetensors", tiny_backbone), data)
    batch = collate(
        [EvalImages(data.records, eval_transform(tiny_backbone.preprocessing))[i] for i in range(len(data))]
    )
    assert batch.images is not None and torch.equal(batch.labels, trained.labels)
    class_matrix = exported.class_embeddings
    assert class_matrix is not None
    served = (tiny_backbone.encode_images(batch.images) @ class_matrix.t()).argmax(dim=-1)
    assert torch.equal(served, trained.predictions)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_features = session.run(None, {"pixels": batch.images.numpy()})[0]
    assert np.array_equal((onnx_features @ class_matrix.numpy().T).argmax(axis=-1), served.numpy())


def test_label_only_classes_reach_methods_that_learn_them_and_are_refused_elsewhere(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = ["--arch", "clipserve-tiny-vit", "--pretrained", "random", "--num-workers", "0", "--no-progress"]
    quick = ["--shots", "2", "--epochs", "1", "--batch-size", "4", *tiny]
    args = ["train", "--data", str(image_folder), "--label-only-classes", "purple square", *quick]
    assert main([*args, "--method", "ship", "--out", str(tmp_path / "ship")]) == 0
    served = load_checkpoint(tmp_path / "ship" / "seed_1" / "checkpoint.safetensors")
    # SHIP serves its stage-B CoOp over the data's classes plus the label-only one.
    assert served.header.method == "coop" and served.header.classnames[-1] == "purple square"
    assert served.class_embeddings is not None and len(served.class_embeddings) == 5
    assert main([*args, "--method", "coop", "--out", str(tmp_path / "coop")]) == 2
    assert "label_only_classes" in capsys.readouterr().err
