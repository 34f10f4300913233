"""The papers' evaluation protocols as named modes (methods.md §9), over one or more checkpoints
(one per seed). Every image set is scored in its own label space; accuracies are percentages,
aggregated as mean and population std over checkpoints (Dassl's parse_test_res).

- few-shot: one test set; accuracy mean ± std.
- base-to-new: the test set's sorted labels split in halves (first ceil(n/2) = base); base
  images scored among base classes only, new among new only; HM = 2BN/(B+N). The headline HM is
  the HM of the mean B and N (as the papers average), per-seed HMs are reported too.
- cross-dataset: the learned context reused on other datasets' class lists; average over them.
- domain-shift: the same classes under shifted images (ImageNet -> V2/Sketch/A/R); each target
  uses its own (sub)set of class names; average over targets, source reported apart.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

from models.prompts import PromptLearner
from training.data.fewshot import base_new_split
from training.data.sources import LabeledImages
from training.evaluate import SetResult, evaluate
from training.requests import EvalMode

MODES: tuple[str, ...] = get_args(EvalMode)

Evaluator = Callable[[PromptLearner, LabeledImages], SetResult]


@dataclass
class SetSummary:
    name: str
    results: list[SetResult] = field(default_factory=list)  # one per checkpoint

    @property
    def accuracies(self) -> list[float]:
        return [r.accuracy for r in self.results]

    def to_dict(self) -> dict[str, Any]:
        first = self.results[0]
        per_class = [
            statistics.fmean(v) for v in zip(*(r.per_class_accuracy() for r in self.results), strict=True)
        ]
        return {
            "accuracy": mean_std(self.accuracies) | {"per_checkpoint": self.accuracies},
            "images": len(first.labels),
            "classes": len(first.classnames),
            "skipped": sorted({p for r in self.results for p in r.skipped}),
            "per_class_accuracy": dict(zip(first.classnames, per_class, strict=True)),
        }


@dataclass
class Evaluation:
    mode: str
    checkpoints: list[str]
    sets: dict[str, SetSummary]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "checkpoints": self.checkpoints,
            "summary": self.summary,
            "sets": {name: s.to_dict() for name, s in self.sets.items()},
            "notes": self.notes,
        }


def mean_std(values: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values)}


def harmonic_mean(base: float, new: float) -> float:
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


def run_protocol(
    mode: str,
    learners: Sequence[PromptLearner],
    test: LabeledImages | None,
    targets: Sequence[LabeledImages] = (),
    evaluator: Evaluator = evaluate,
) -> tuple[dict[str, SetSummary], dict[str, Any], list[str]]:
    """Score every learner on the mode's sets; returns (sets, summary, notes)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    sets = protocol_sets(mode, test, targets)
    notes = class_list_notes(mode, learners, sets)
    summaries = {
        name: SetSummary(name, [evaluator(learner, data) for learner in learners])
        for name, data in sets.items()
    }
    return summaries, summarise(mode, summaries), notes


def protocol_sets(
    mode: str, test: LabeledImages | None, targets: Sequence[LabeledImages]
) -> dict[str, LabeledImages]:
    if mode in ("few-shot", "base-to-new") and test is None:
        raise ValueError(f"{mode} needs a test set")
    if mode in ("cross-dataset", "domain-shift") and not targets:
        raise ValueError(f"{mode} needs at least one target set")
    if mode == "few-shot":
        assert test is not None
        return {"test": test}
    if mode == "base-to-new":
        assert test is not None
        base, new = base_new_split(len(test.keys))
        return {"base": test.select_classes(base), "new": test.select_classes(new)}
    sets = {"source": test} if test is not None and mode == "domain-shift" else {}
    for target in targets:
        sets[_unique(target.name or "target", sets)] = target
    return sets


def summarise(mode: str, sets: dict[str, SetSummary]) -> dict[str, Any]:
    if mode == "few-shot":
        return mean_std(sets["test"].accuracies)
    if mode == "base-to-new":
        base, new = sets["base"].accuracies, sets["new"].accuracies
        per_seed = [harmonic_mean(b, n) for b, n in zip(base, new, strict=True)]
        b, n = statistics.fmean(base), statistics.fmean(new)
        return {"base": b, "new": n, "hm": harmonic_mean(b, n), "hm_per_checkpoint": mean_std(per_seed)}
    targets = {name: s for name, s in sets.items() if name != "source"}
    summary: dict[str, Any] = {name: statistics.fmean(s.accuracies) for name, s in sets.items()}
    summary["average"] = statistics.fmean(statistics.fmean(s.accuracies) for s in targets.values())
    return summary


def class_list_notes(
    mode: str, learners: Sequence[PromptLearner], sets: dict[str, LabeledImages]
) -> list[str]:
    """Warn where the trained classes are not the ones a protocol expects to score."""
    notes = []
    expected = {"few-shot": "test", "base-to-new": "base", "domain-shift": "source"}.get(mode)
    if expected in sets:
        for learner in learners:
            if learner.classnames != sets[expected].classnames:
                notes.append(
                    f"the checkpoint was trained on {len(learner.classnames)} classes that differ from the "
                    f"{len(sets[expected].classnames)} classes of set {expected!r}; each set is scored "
                    f"among its own classes"
                )
                break
    return notes


def _unique(name: str, taken: dict[str, Any]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    return candidate


def _mean_or_none(values: Sequence[float]) -> float | None:
    """A class without test images has no accuracy: None in the report (JSON has no NaN)."""
    finite = [v for v in values if not math.isnan(v)]
    return statistics.fmean(finite) if finite else None
