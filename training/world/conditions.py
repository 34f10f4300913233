"""Evaluation conditions layered on top of a scene: distractor shapes (clutter), smaller objects
and lower contrast. They make the world harder without changing which scenes exist: a condition
is drawn from its own seeded generator after the scene (and its split) is fixed, so the clean
scenes, their digests and the train/held-out split are exactly those of the plain world, and the
pretraining pool (clean scenes only) never shows a condition.

A condition gives ranges; each sample draws its own values from them (`draw_extras`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.world.shapes import SHAPES


@dataclass(frozen=True)
class Condition:
    distractors: tuple[int, int] = (0, 0)  # how many other shapes, inclusive range
    scale: tuple[float, float] = (1.0, 1.0)  # the object's radius times this
    contrast: tuple[float, float] = (1.0, 1.0)  # 1: its own colour; 0: the background's tone

    def is_clean(self) -> bool:
        return self == Condition()

    def to_dict(self) -> dict[str, list[float]]:
        return {
            "distractors": list(self.distractors),
            "scale": list(self.scale),
            "contrast": list(self.contrast),
        }


@dataclass(frozen=True)
class Distractor:
    shape: str
    radius: float  # fraction of the canvas
    cx: float
    cy: float
    rotation: int
    rgb: tuple[int, int, int]  # a nearly grey tone: never one of the class colours


@dataclass(frozen=True)
class Extras:
    """The drawn values of one sample's condition."""

    scale: float = 1.0
    contrast: float = 1.0
    distractors: tuple[Distractor, ...] = ()


def draw_extras(rng: np.random.Generator, condition: Condition) -> Extras:
    count = int(rng.integers(condition.distractors[0], condition.distractors[1] + 1))
    return Extras(
        scale=round(float(rng.uniform(*condition.scale)), 3),
        contrast=round(float(rng.uniform(*condition.contrast)), 3),
        distractors=tuple(_distractor(rng) for _ in range(count)),
    )


def _distractor(rng: np.random.Generator) -> Distractor:
    radius = round(float(rng.uniform(0.1, 0.2)), 3)
    cx, cy = (round(float(rng.uniform(radius, 1 - radius)), 3) for _ in range(2))
    value = int(rng.integers(40, 216))
    tint = rng.integers(-10, 11, size=3)  # a little hue, far from any class colour's saturation
    rgb = tuple(int(np.clip(value + t, 0, 255)) for t in tint)
    return Distractor(
        shape=str(rng.choice(list(SHAPES))),
        radius=radius,
        cx=cx,
        cy=cy,
        rotation=int(rng.integers(-180, 180)),
        rgb=(rgb[0], rgb[1], rgb[2]),
    )


def combined(level: float) -> Condition:
    """All three nuisances at one strength: 0 is the clean world, 1 the hardest we draw
    (2-4 distractors, the object at 50-70% of its size, 30-50% of its colour contrast)."""
    return Condition(
        distractors=(round(2 * level), round(4 * level)),
        scale=(round(1 - 0.5 * level, 3), round(1 - 0.3 * level, 3)),
        contrast=(round(1 - 0.7 * level, 3), round(1 - 0.5 * level, 3)),
    )


CONDITIONS: dict[str, Condition] = {
    "clean": Condition(),
    "clutter": Condition(distractors=(2, 4)),
    "small": Condition(scale=(0.5, 0.7)),
    "faint": Condition(contrast=(0.3, 0.5)),
    "hard": combined(1.0),
}
