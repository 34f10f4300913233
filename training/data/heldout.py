"""Validation sets for training: a share of each class held out of the training folder, or another
folder relabelled into the training classes' label space."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from training.data.batches import mixed_seed
from training.data.sources import DatasetError, ImageRecord, LabeledImages

log = logging.getLogger(__name__)


def hold_out(data: LabeledImages, fraction: float) -> tuple[LabeledImages, LabeledImages]:
    """(training, validation): per class, round(fraction x its images) for validation (at least
    one, never all). Which ones is decided by a digest of each image's path inside the dataset,
    so every seed validates on the same images and the choice survives moving the folder."""
    if not 0 < fraction < 1:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction}")
    root = Path(data.source) if Path(data.source).is_dir() else Path(data.source).parent
    by_class: dict[int, list[ImageRecord]] = defaultdict(list)
    for record in data.records:
        by_class[record.label].append(record)
    held: set[str] = set()
    for label, records in by_class.items():
        key = data.keys[label]
        records.sort(key=lambda r: (mixed_seed("validation", key, _inside(r.path, root)), r.path))
        count = min(len(records) - 1, max(1, round(fraction * len(records))))
        held.update(r.path for r in records[:count])
    training = [r for r in data.records if r.path not in held]
    validation = [r for r in data.records if r.path in held]
    return replace(data, records=training), replace(data, records=validation, name=f"{data.name}-heldout")


def align_classes(validation: LabeledImages, training: LabeledImages) -> LabeledImages:
    """`validation` in the label space of `training` (matched by folder name / CSV label); images
    of classes the run does not train are left out, and said so."""
    label_of = {key: label for label, key in enumerate(training.keys)}
    records = [
        ImageRecord(r.path, label_of[validation.keys[r.label]])
        for r in validation.records
        if validation.keys[r.label] in label_of
    ]
    others = sorted(set(validation.keys) - set(label_of))
    if others:
        log.warning("validation: %d classes are not trained and are left out: %s", len(others), others[:10])
    if not records:
        raise DatasetError(f"{validation.source}: no validation images of the training classes")
    return replace(training, records=records, source=validation.source, name=validation.name)


def _inside(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path
