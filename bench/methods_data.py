"""The image sets of `make bench-methods`, written from the procedural world as ordinary image
folders (one sub-folder per class, classnames.txt in label order) so training and evaluation go
through the same data path as `clipserve train` / `clipserve eval`.

A set is named by what decides its pixels (split, style, condition, label space, count, start);
its folder is kept under the bench's work directory and reused when it already exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from training.data import LabeledImages, load_dataset
from training.data.sources import CLASSNAMES_FILE
from training.world import World
from training.world.conditions import Condition
from training.world.scene import COLOURS
from training.world.shapes import SHAPES

LABEL_SPACES = ("class", "shape", "colour")  # the world's 64 classes, or its 8 shapes / 8 colours


@dataclass(frozen=True)
class SetSpec:
    name: str
    split: str  # train | heldout
    per_class: int  # images per world class (64 classes)
    style: str = "photo"
    condition: Condition = field(default_factory=Condition)
    labels: str = "class"
    start: int = 0  # first sample, in per-class units

    def digest(self) -> str:
        fields = {**asdict(self), "condition": self.condition.to_dict()}
        del fields["name"]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def materialise(world: World, spec: SetSpec, root: Path) -> LabeledImages:
    """The set as a loaded dataset, rendering its folder first unless it is already complete."""
    folder = root / f"{spec.name}-{spec.digest()}"
    if not (folder / CLASSNAMES_FILE).is_file():
        _write(world, spec, folder)
    data = load_dataset(folder)
    data.name = spec.name
    return data


def _write(world: World, spec: SetSpec, folder: Path) -> None:
    """Render into a temporary folder, then rename it: an interrupted run leaves no half set."""
    temp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(temp, ignore_errors=True)
    keys, names = label_space(world, spec.labels)
    for key in keys:
        (temp / key).mkdir(parents=True)
    count = spec.per_class * len(world)
    for sample in world.samples(spec.split, count, spec.start * len(world), spec.style, spec.condition):
        key = keys[_label(world, sample.label, spec.labels)]
        world.image(sample).save(temp / key / f"{spec.split}_{sample.index:07d}.png")
    lines = [f"{key} {name}" for key, name in zip(keys, names, strict=True)]
    (temp / CLASSNAMES_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(temp, folder)


def label_space(world: World, labels: str) -> tuple[list[str], list[str]]:
    """(folder keys, class names) of a label space, in label order."""
    if labels == "class":
        return world.class_keys, world.classnames
    if labels == "shape":
        return list(SHAPES), list(SHAPES)
    if labels == "colour":
        return list(COLOURS), list(COLOURS)
    raise ValueError(f"label space must be one of {LABEL_SPACES}, got {labels!r}")


def _label(world: World, label: int, labels: str) -> int:
    colour, shape = world.classes[label]
    if labels == "shape":
        return list(SHAPES).index(shape)
    if labels == "colour":
        return list(COLOURS).index(colour)
    return label
