"""Few-shot sampling and the base/new class split of the papers' protocols (methods.md §9).

Sampling is deterministic in (seed, class key): each class shuffles its own sorted file list with a
generator seeded by both, so adding a class or a file elsewhere does not change a class's draw.
Unreadable images are skipped during the draw (the next file of the shuffled order takes their
place) so every class gets K images that decode, and the skipped paths are recorded.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from training.data.images import is_readable
from training.data.sources import ImageRecord, LabeledImages

log = logging.getLogger(__name__)

Subset = Literal["all", "base", "new"]
SUBSETS: tuple[str, ...] = get_args(Subset)


@dataclass
class FewShotRecord:
    """What was drawn, so a run can be audited and repeated."""

    shots: int | None
    seed: int
    images: list[tuple[str, int]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    short_classes: dict[str, int] = field(default_factory=dict)  # key -> images available (< shots)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shots": self.shots,
            "seed": self.seed,
            "images": [list(pair) for pair in self.images],
            "unreadable": self.unreadable,
            "short_classes": self.short_classes,
        }


def sample_few_shot(
    data: LabeledImages,
    shots: int | None,
    seed: int,
    readable: Callable[[str], bool] = is_readable,
) -> tuple[LabeledImages, FewShotRecord]:
    """K readable images per class (all of them when shots is None; those are checked lazily)."""
    record = FewShotRecord(shots=shots, seed=seed)
    if shots is None:
        record.images = [(r.path, r.label) for r in data.records]
        return data, record
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    orders = _shuffled_per_class(data, seed)
    readable = _prechecked(readable, [p for order in orders.values() for p in order[:shots]])
    chosen: list[ImageRecord] = []
    for label, order in orders.items():
        picked = _draw(order, shots, readable, record)
        if len(picked) < shots:
            record.short_classes[data.keys[label]] = len(picked)
            log.warning(
                "class %r has only %d readable images (< %d shots)", data.keys[label], len(picked), shots
            )
        chosen.extend(ImageRecord(path, label) for path in picked)
    record.images = [(r.path, r.label) for r in chosen]
    return replace(data, records=chosen), record


def _shuffled_per_class(data: LabeledImages, seed: int) -> dict[int, list[str]]:
    by_class: dict[int, list[str]] = {label: [] for label in range(len(data.keys))}
    for r in data.records:
        by_class[r.label].append(r.path)
    for label, paths in by_class.items():
        paths.sort()
        random.Random(f"{seed}:{data.keys[label]}").shuffle(paths)
    return by_class


def _prechecked(readable: Callable[[str], bool], likely: list[str]) -> Callable[[str], bool]:
    """Check the first K candidates of every class in parallel (decoders release the GIL); the
    rare replacement for an unreadable one is checked when the draw reaches it."""
    with ThreadPoolExecutor(max_workers=min(32, os.cpu_count() or 1)) as pool:
        known = dict(zip(likely, pool.map(readable, likely), strict=True))
    return lambda path: known[path] if path in known else readable(path)


def _draw(order: list[str], shots: int, readable: Callable[[str], bool], record: FewShotRecord) -> list[str]:
    picked: list[str] = []
    for path in order:
        if len(picked) == shots:
            break
        if readable(path):
            picked.append(path)
        else:
            log.warning("skipping unreadable image %s", path)
            record.unreadable.append(path)
    return sorted(picked)


def base_new_split(n_classes: int) -> tuple[list[int], list[int]]:
    """Label ids sorted; base = the first ceil(n/2), new = the rest (CoCoOp's protocol)."""
    n_base = math.ceil(n_classes / 2)
    return list(range(n_base)), list(range(n_base, n_classes))


def select_subset(data: LabeledImages, subset: str) -> LabeledImages:
    """ "all", or the base/new half of the classes relabelled into its own label space."""
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
    if subset == "all":
        return data
    base, new = base_new_split(len(data.keys))
    return data.select_classes(base if subset == "base" else new)
