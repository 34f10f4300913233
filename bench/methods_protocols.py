"""The experiments of `make bench-methods`, each a function from the runner and the image sets to
a JSON-able dict of accuracies (%, mean and population std over seeds):

- conditions: zero-shot only, on held-out photos under each nuisance and strength (how the
  evaluation condition was chosen) and on the clean held-out styles;
- few_shot: K shots per class of all 64 classes, scored on the condition's held-out photos;
- sixteen: the 16-shot models of every method on the source, the easy photos, each other style
  (domain shift) and the 8-class shape and colour worlds (cross-dataset);
- base_to_new: trained on the first 32 classes (16 shots), base and new each in its own label space;
- ship_setting: new classes named but imageless during training, all 64 scored jointly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.methods_runs import Runner, ZeroShot, score, score_probe, summary
from bench.methods_settings import CONDITION_GRID, CONDITION_LEVEL, ENSEMBLE, TEMPLATE
from models.prompts import PromptLearner
from training.data import LabeledImages
from training.data.fewshot import base_new_split
from training.pretrain.evaluate import LinearProbe
from training.world.conditions import CONDITIONS, combined

log = logging.getLogger(__name__)

PROMPT_ROWS = ("coop", "cocoop", "maple", "gopro")  # trained on all classes at 16 shots


@dataclass
class Sets:
    """The materialised image sets (bench/methods_data.py) one run scores on."""

    train: LabeledImages  # training split, the condition, photos
    test: LabeledImages  # held-out, the condition, photos
    easy: LabeledImages  # held-out, clean, photos
    shift: dict[str, LabeledImages]  # held-out, the condition, each other style
    cross: dict[str, LabeledImages]  # held-out, the condition, photos, 8 shape / 8 colour classes
    grid: dict[str, LabeledImages]  # held-out photos per nuisance and strength; clean styles


def conditions(runner: Runner, sets: Sets) -> dict[str, Any]:
    rows = {}
    for name, data in sets.grid.items():
        learner = ZeroShot(runner.backbone, data.classnames, TEMPLATE)
        rows[name] = score([learner], data)[0]
    return {
        "zero_shot": rows,
        "chosen": f"combined {CONDITION_LEVEL}",
        "chosen_condition": combined(CONDITION_LEVEL).to_dict(),
        "named": {k: v.to_dict() for k, v in CONDITIONS.items()},
        "levels": list(CONDITION_GRID),
    }


def zero_shot_learners(runner: Runner, classnames: Sequence[str]) -> dict[str, list[PromptLearner]]:
    return {
        "zero-shot": [ZeroShot(runner.backbone, classnames, TEMPLATE)],
        "zero-shot ensemble": [ZeroShot(runner.backbone, classnames, ENSEMBLE)],
    }


def few_shot(runner: Runner, sets: Sets) -> tuple[dict[str, Any], dict[str, Any]]:
    """The K-shot curve; also returns the models of the largest K for the 16-shot table."""
    curve: dict[str, dict[int, Any]] = {"coop": {}, "maple": {}, "linear probe": {}}
    kept: dict[str, Any] = {}
    for shots in runner.scale.shots:
        for key in ("coop", "maple"):
            learners = runner.train(key, sets.train, shots)
            curve[key][shots] = summary(score(learners, sets.test))
            kept[key] = learners
        probes = runner.probes(sets.train, shots)
        curve["linear probe"][shots] = summary([r.accuracy for r in score_probe(runner, probes, sets.test)])
        kept["linear probe"] = probes
    for name, learners in zero_shot_learners(runner, sets.test.classnames).items():
        curve[name] = {0: summary(score(learners, sets.test))}
    return curve, kept


def sixteen(runner: Runner, sets: Sets, kept: dict[str, Any]) -> dict[str, Any]:
    shots = max(runner.scale.shots)
    models: dict[str, Any] = {**zero_shot_learners(runner, sets.test.classnames), **kept}
    for key in ("cocoop", "gopro"):
        models[key] = runner.train(key, sets.train, shots)
    named = {"source": sets.test, "easy photos": sets.easy, **sets.shift, **sets.cross}
    table: dict[str, dict[str, Any]] = {}
    for method, items in models.items():
        row = {}
        for set_name, data in named.items():
            if method == "linear probe":
                if set_name in sets.cross:
                    continue  # a probe has no text side: it cannot name other classes
                row[set_name] = summary([r.accuracy for r in score_probe(runner, items, data)])
            else:
                row[set_name] = summary(score(items, data))
        table[method] = row
    averages = {
        method: {
            "domain shift": _average_over(row, list(sets.shift)),
            "cross-dataset": _average_over(row, list(sets.cross)),
        }
        for method, row in table.items()
    }
    return {
        "shots": shots,
        "styles": list(sets.shift),
        "targets": list(sets.cross),
        "table": table,
        "averages": averages,
    }


def _average_over(row: dict[str, Any], names: list[str]) -> dict[str, Any] | None:
    """Per seed, the mean over the named sets; then mean and std over seeds."""
    present = [row[name]["values"] for name in names if name in row]
    if not present:
        return None
    return summary([sum(v) / len(v) for v in zip(*present, strict=True)])


def base_to_new(runner: Runner, sets: Sets) -> tuple[dict[str, Any], dict[str, list[PromptLearner]]]:
    shots = max(runner.scale.shots)
    base_ids, new_ids = base_new_split(len(sets.test.keys))
    base, new = sets.test.select_classes(base_ids), sets.test.select_classes(new_ids)
    new_names = [sets.test.classnames[i] for i in new_ids]
    models: dict[str, list[PromptLearner]] = zero_shot_learners(runner, base.classnames)
    for key in ("coop-b2n", "cocoop", "maple", "gopro"):
        models[key] = runner.train(key, sets.train, shots, subset="base", tag="")
    models["ship"] = runner.train("ship", sets.train, shots, subset="base", label_only=new_names)
    table: dict[str, Any] = {}
    for method, learners in models.items():
        table[method] = _b2n_row(score(learners, base), score(learners, new))
    probes = runner.probes(sets.train, shots, subset="base")
    table["linear probe"] = {"base": summary([r.accuracy for r in score_probe(runner, probes, base)])}
    return {"shots": shots, "base": base.classnames, "new": new.classnames, "table": table}, models


def _b2n_row(base: list[float], new: list[float]) -> dict[str, Any]:
    b, n = summary(base), summary(new)
    per_seed = [_hm(x, y) for x, y in zip(base, new, strict=True)]
    return {"base": b, "new": n, "hm": _hm(b["mean"], n["mean"]), "hm_per_seed": summary(per_seed)}


def _hm(base: float, new: float) -> float:
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


def ship_setting(runner: Runner, sets: Sets, b2n_models: dict[str, list[PromptLearner]]) -> dict[str, Any]:
    """All 64 classes at once, on the held-out photos of base and of new classes."""
    base_ids, new_ids = base_new_split(len(sets.test.keys))
    rows = {}
    for method in ("zero-shot", "coop-b2n", "ship"):
        learners = b2n_models[method]
        if method == "zero-shot":
            learners = [ZeroShot(runner.backbone, sets.test.classnames, TEMPLATE)]
        base, new = [], []
        for learner in learners:
            base.append(_joint(learner, sets.test, base_ids))
            new.append(_joint(learner, sets.test, new_ids))
        rows[method] = _b2n_row(base, new)
    return {"table": rows}


def _joint(learner: PromptLearner, data: LabeledImages, label_ids: list[int]) -> float:
    """Accuracy on the images of `label_ids`, classified among all of the set's classes."""
    from training.evaluate import evaluate

    result = evaluate(learner, data, batch_size=256)
    keep = sum((result.labels == i) for i in label_ids).bool()
    return 100.0 * float((result.predictions[keep] == result.labels[keep]).float().mean())


def pretraining(
    runners: dict[str, Runner], sets_for: Callable[[Runner], Sets], headers: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """ProtoCLIP against InfoNCE at equal steps: zero-shot and a 16-shot linear probe."""
    rows = {}
    for name, runner in runners.items():
        sets = sets_for(runner)
        zero = ZeroShot(runner.backbone, sets.test.classnames, TEMPLATE)
        sketch = sets.grid.get("clean sketch")
        probes: list[LinearProbe] = runner.probes(sets.train, max(runner.scale.shots))
        rows[name] = {
            "zero-shot easy photos": score([zero], sets.easy)[0],
            "zero-shot easy sketches": score([zero], sketch)[0] if sketch is not None else None,
            "zero-shot condition": score([zero], sets.test)[0],
            "linear probe condition": summary([r.accuracy for r in score_probe(runner, probes, sets.test)]),
            "pretraining": headers.get(name, {}),
        }
    return {"table": rows}
