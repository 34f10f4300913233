"""Evaluation on the tiny CLIP: accuracy and confusion, the four protocols' label spaces and
aggregation, and the report files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.backbone import Backbone
from models.prompts import CoOp, CoOpConfig
from tests.training.conftest import CLASSES
from training.data import load_dataset
from training.evaluate import SetResult, evaluate
from training.protocols import Evaluation, harmonic_mean, run_protocol
from training.report import write_report


def _learner(backbone: Backbone, classnames: list[str], seed: int) -> CoOp:
    torch.manual_seed(seed)
    return CoOp(backbone, classnames, CoOpConfig(n_ctx=4)).eval()


def test_evaluate_scores_every_readable_image_and_skips_the_bad_one(
    test_folder: Path, tiny_backbone: Backbone
) -> None:
    data = load_dataset(test_folder)
    result = evaluate(_learner(tiny_backbone, data.classnames, 1), data)
    assert len(result.labels) == 16 and result.skipped == [str(test_folder / "green_square" / "corrupt.jpg")]
    assert int(result.confusion().sum()) == 16
    correct = int(result.confusion().diag().sum())
    assert result.accuracy == pytest.approx(100 * correct / 16)
    assert len(result.per_class_accuracy()) == 4


def test_base_to_new_scores_each_half_in_its_own_label_space(
    test_folder: Path, tiny_backbone: Backbone
) -> None:
    data = load_dataset(test_folder)
    learners = [_learner(tiny_backbone, data.classnames[:2], s) for s in (1, 2)]
    seen: dict[str, list[str]] = {}

    def evaluator(learner: CoOp, subset) -> SetResult:  # type: ignore[no-untyped-def]
        seen.setdefault(subset.classnames[0], subset.classnames)
        assert {r.label for r in subset.records} == {0, 1}  # relabelled
        return evaluate(learner, subset)

    sets, summary, notes = run_protocol("base-to-new", learners, data, evaluator=evaluator)
    assert set(sets) == {"base", "new"}
    assert list(seen.values()) == [sorted(CLASSES)[:2], sorted(CLASSES)[2:]]
    assert summary["hm"] == pytest.approx(harmonic_mean(summary["base"], summary["new"]))
    assert notes == []  # trained on exactly the base classes


def test_aggregation_over_checkpoints_and_targets(test_folder: Path, tiny_backbone: Backbone) -> None:
    data = load_dataset(test_folder)
    learners = [_learner(tiny_backbone, data.classnames, s) for s in (1, 2)]
    a, b = data.select_classes([0, 1]), data.select_classes([2, 3])
    a.name, b.name = "target_a", "target_b"
    scores = {"target_a": iter([50.0, 70.0]), "target_b": iter([20.0, 40.0])}

    def evaluator(learner: CoOp, subset) -> SetResult:  # type: ignore[no-untyped-def]
        right = int(next(scores[subset.name]))
        predictions = torch.cat([torch.zeros(right), torch.ones(100 - right)]).long()
        return SetResult(subset.name, subset.classnames, torch.zeros(100, dtype=torch.long), predictions)

    sets, summary, _ = run_protocol("cross-dataset", learners, None, [a, b], evaluator=evaluator)
    assert sets["target_a"].to_dict()["accuracy"] == {
        "mean": 60.0,
        "std": 10.0,
        "per_checkpoint": [50.0, 70.0],
    }
    assert summary == {"target_a": 60.0, "target_b": 30.0, "average": 45.0}


def test_report_has_json_markdown_and_plots(
    test_folder: Path, tiny_backbone: Backbone, tmp_path: Path
) -> None:
    data = load_dataset(test_folder)
    learners = [_learner(tiny_backbone, data.classnames, s) for s in (1, 2)]
    sets, summary, notes = run_protocol("few-shot", learners, data)
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(
        "".join(
            json.dumps({"event": "epoch", "epoch": e, "loss": 1 / (e + 1), "lr": 0.002}) + "\n"
            for e in range(3)
        )
    )
    path = write_report(
        Evaluation("few-shot", ["a", "b"], sets, summary, notes), tmp_path / "report", {"seed_1": metrics}
    )
    report = json.loads(path.read_text())
    assert report["summary"]["mean"] == pytest.approx(sum(sets["test"].accuracies) / 2)
    assert sorted(report["figures"].values()) == ["confusion_test.png", "curves.png", "per_class_test.png"]
    for name in report["figures"].values():
        assert (tmp_path / "report" / name).read_bytes()[:4] == b"\x89PNG"
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| test | 16 | 4 |" in markdown and "corrupt.jpg" in markdown


def test_domain_shift_reports_the_source_apart_from_the_targets_average(
    test_folder: Path, tiny_backbone: Backbone
) -> None:
    data = load_dataset(test_folder)
    sketch, subset = (
        data.select_classes([0, 1, 2, 3]),
        data.select_classes([1, 3]),
    )  # e.g. ImageNet-A: a subset
    sketch.name, subset.name = "sketch", "subset"
    accuracy = {data.name: 90, "sketch": 40, "subset": 60}
    seen = {}

    def evaluator(learner: CoOp, target) -> SetResult:  # type: ignore[no-untyped-def]
        seen[target.name] = target.classnames
        right = accuracy[target.name]
        predictions = torch.cat([torch.zeros(right), torch.ones(100 - right)]).long()
        return SetResult(target.name, target.classnames, torch.zeros(100, dtype=torch.long), predictions)

    learner = _learner(tiny_backbone, data.classnames, 1)
    sets, summary, notes = run_protocol(
        "domain-shift", [learner], data, [sketch, subset], evaluator=evaluator
    )
    assert list(sets) == ["source", "sketch", "subset"] and notes == []
    assert summary == {"source": 90.0, "sketch": 40.0, "subset": 60.0, "average": 50.0}
    assert seen["subset"] == [data.classnames[1], data.classnames[3]]  # the subset's own class names
