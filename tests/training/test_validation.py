"""Validation during training: the held-out split, validation sets relabelled into the training
classes, the scores in metrics.jsonl (equal to evaluating the checkpoint), --keep best, and what
the checkpoint records about the epoch it holds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from models.backbone import Backbone
from models.checkpoint import load_checkpoint, read_header
from models.prompts import CoCoOp, CoCoOpConfig, CoOp, CoOpConfig
from tests.training.conftest import CLASSES, make_image_folder, tiny_request
from training.data import load_dataset
from training.data.heldout import align_classes, hold_out
from training.distributed import DistContext
from training.evaluate import evaluate
from training.learners import load_learner
from training.metrics import read_metrics
from training.pipeline import run_training
from training.plots import validation_points
from training.validation import Validator


def relative(paths: list[str], root: Path) -> set[str]:
    return {Path(p).relative_to(root).as_posix() for p in paths}


def test_hold_out_takes_a_share_of_every_class_the_same_wherever_the_folder_is(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "a", per_class=10, corrupt=False)
    data = load_dataset(root)
    training, validation = hold_out(data, 0.25)
    assert [validation.counts(), training.counts()] == [[2, 2, 2, 2], [8, 8, 8, 8]]  # round(2.5) = 2
    assert not {r.path for r in training.records} & {r.path for r in validation.records}
    assert len(training) + len(validation) == len(data)
    moved = shutil.copytree(root, tmp_path / "elsewhere")
    _, again = hold_out(load_dataset(moved), 0.25)
    assert relative([r.path for r in again.records], moved) == relative(
        [r.path for r in validation.records], root
    )
    assert hold_out(data, 0.01)[1].counts() == [1, 1, 1, 1]  # at least one per class
    with pytest.raises(ValueError, match="fraction"):
        hold_out(data, 1.0)


def test_validation_sets_are_relabelled_into_the_training_classes(tmp_path: Path) -> None:
    training = load_dataset(make_image_folder(tmp_path / "train", per_class=2, corrupt=False))
    val_root = make_image_folder(tmp_path / "val", per_class=1, corrupt=False)
    shutil.rmtree(val_root / CLASSES[0])  # the training set's third class in sorted order
    (val_root / "purple_square").mkdir()
    shutil.copy(val_root / CLASSES[1] / "img_000.png", val_root / "purple_square" / "img_000.png")
    aligned = align_classes(load_dataset(val_root), training)
    assert aligned.keys == training.keys and aligned.classnames == training.classnames
    labels = {Path(r.path).parent.name: r.label for r in aligned.records}
    assert labels == {key: training.keys.index(key) for key in CLASSES[1:]}  # purple left out


def test_the_validator_scores_like_evaluate_with_or_without_cached_features(
    test_folder: Path, tiny_backbone: Backbone
) -> None:
    data = load_dataset(test_folder)
    torch.manual_seed(0)
    for learner in (
        CoOp(tiny_backbone, data.classnames, CoOpConfig(n_ctx=4)),
        CoCoOp(tiny_backbone, data.classnames, CoCoOpConfig(n_ctx=4)),  # image-conditioned: no cache
    ):
        reference = evaluate(learner, data)
        assert len(reference.labels) == 16  # the corrupt file is skipped by both
        assert Validator(data, every=1).score(learner) == (reference.accuracy, 16)


def test_validation_scores_are_recorded_and_the_checkpoint_says_which_epoch_it_holds(
    image_folder: Path, test_folder: Path, tmp_path: Path, tiny_backbone: Backbone
) -> None:
    request = tiny_request(
        image_folder,
        tmp_path / "run",
        val=str(test_folder),
        val_every=2,
        hparams={"epochs": 3, "batch_size": 4},
    )
    path, result = run_training(request, DistContext(), backbone=tiny_backbone)
    records = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["event"] == "validation"]
    assert [r["epoch"] for r in records] == [1, 2]  # every 2nd epoch, and the last
    served = evaluate(load_learner(path, tiny_backbone), load_dataset(test_folder))
    assert records[-1]["accuracy"] == served.accuracy == result.last_score and records[-1]["images"] == 16
    training = read_header(path).provenance["training"]
    assert (training["keep"], training["epoch"], training["epochs"]) == ("last", 3, 3)
    assert training["validation"] == {
        "accuracy": served.accuracy,
        "source": str(test_folder),
        "images_listed": 17,
    }


def test_keep_best_holds_the_weights_of_the_best_validation_epoch(
    image_folder: Path, test_folder: Path, tmp_path: Path, tiny_backbone: Backbone
) -> None:
    # A constant lr makes the first e epochs of any run identical, so the best epoch's weights can be
    # reproduced independently by a run that stops there. Class-specific contexts learn the colours.
    hparams = {"epochs": 4, "batch_size": 4, "lr": 0.05, "scheduler": "constant", "warmup_epochs": 0}
    learner = {"n_ctx": 4, "class_specific": True}
    best_run = tiny_request(
        image_folder, tmp_path / "best", val=str(test_folder), keep="best", hparams=hparams, learner=learner
    )
    path, result = run_training(best_run, DistContext(), backbone=tiny_backbone)
    records = [r for r in read_metrics(tmp_path / "best" / "metrics.jsonl") if r["event"] == "validation"]
    scores = [r["accuracy"] for r in records]
    best_epoch = scores.index(max(scores))  # the first epoch that reached the maximum
    assert best_epoch < 3 and len(set(scores)) > 1, scores  # the best is not simply the last
    assert result.best is not None and (result.best.completed, result.best.score) == (
        best_epoch + 1,
        max(scores),
    )
    assert records[-1]["best_epoch"] == best_epoch
    stopped = tiny_request(
        image_folder, tmp_path / "stopped", hparams={**hparams, "epochs": best_epoch + 1}, learner=learner
    )
    reference, _ = run_training(stopped, DistContext(), backbone=tiny_backbone)
    assert torch.equal(load_checkpoint(path).tensors["ctx"], load_checkpoint(reference).tensors["ctx"])
    training = read_header(path).provenance["training"]
    assert (training["keep"], training["epoch"], training["validation"]["accuracy"]) == (
        "best",
        best_epoch + 1,
        max(scores),
    )
    assert evaluate(load_learner(path, tiny_backbone), load_dataset(test_folder)).accuracy == max(scores)


def test_a_held_out_fraction_validates_on_images_the_run_never_trains_on(
    tmp_path: Path, tiny_backbone: Backbone
) -> None:
    data = make_image_folder(tmp_path / "data", per_class=8, corrupt=False)
    request = tiny_request(
        data, tmp_path / "run", val_fraction=0.25, shots=None, hparams={"epochs": 1, "batch_size": 8}
    )
    run_training(request, DistContext(), backbone=tiny_backbone)
    split = __import__("json").loads((tmp_path / "run" / "split.json").read_text())
    held, trained = {p for p, _ in split["validation"]}, {p for p, _ in split["images"]}
    assert len(held) == 8 and len(trained) == 24 and not held & trained


def test_contradictory_validation_options_are_refused_before_any_work(
    tmp_path: Path, image_folder: Path
) -> None:
    with pytest.raises(ValueError, match="--keep best needs a validation set"):
        run_training(tiny_request(image_folder, tmp_path / "a", keep="best"), DistContext())
    with pytest.raises(ValueError, match="not both"):
        run_training(tiny_request(image_folder, tmp_path / "b", val="x", val_fraction=0.2), DistContext())
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_validation_points_sit_on_their_epoch_across_stages() -> None:
    epochs = [
        {"event": "epoch", "stage_index": s, "epoch": e, "loss": 1.0, "lr": 0.1}
        for s in (0, 1)
        for e in (0, 1)
    ]
    records = [*epochs, {"event": "validation", "stage_index": 1, "epoch": 1, "accuracy": 75.0}]
    assert validation_points(records, epochs) == [(4, 75.0)]
