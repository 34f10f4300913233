"""The shapes of the world as closed polygons in unit coordinates (centre 0, radius about 1,
y pointing down as in image coordinates). Every outline is a plain list of points, so one routine
fills it ("photo") or traces it ("sketch"), and a scale + rotation + shift places it."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Outline = np.ndarray  # [P, 2] float64, a closed polygon (the last point joins the first)


def _circle(points: int = 48) -> Outline:
    t = np.linspace(0, 2 * math.pi, points, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _regular(sides: int, start: float) -> Outline:
    t = start + np.arange(sides) * 2 * math.pi / sides
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _square() -> Outline:
    return _regular(4, math.pi / 4) * math.sqrt(2) * 0.82


def _triangle() -> Outline:
    # Apex up; the centroid sits at the origin, so shift down to centre the bounding box.
    return _regular(3, -math.pi / 2) + np.array([0.0, 0.2])


def _star(tips: int = 5, inner: float = 0.42) -> Outline:
    t = -math.pi / 2 + np.arange(2 * tips) * math.pi / tips
    r = np.where(np.arange(2 * tips) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _heart(points: int = 60) -> Outline:
    t = np.linspace(0, 2 * math.pi, points, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    return np.stack([x / 16.5, -(y + 2.5) / 15.5], axis=1)


def _cross(arm: float = 0.34) -> Outline:
    a = arm
    return np.array(
        [
            [-a, -1],
            [a, -1],
            [a, -a],
            [1, -a],
            [1, a],
            [a, a],
            [a, 1],
            [-a, 1],
            [-a, a],
            [-1, a],
            [-1, -a],
            [-a, -a],
        ]
    )


def _crescent(points: int = 40) -> Outline:
    # The outer arc of the unit circle, then back along an inner arc of a circle shifted right.
    outer = np.linspace(math.pi * 0.28, math.pi * 1.72, points)
    inner = np.linspace(math.pi * 1.62, math.pi * 0.38, points)
    ox, oy = np.cos(outer), np.sin(outer)
    ix, iy = 0.45 + 0.85 * np.cos(inner), 0.85 * np.sin(inner)
    return np.stack([np.concatenate([ox, ix]), np.concatenate([oy, iy])], axis=1)


def _arrow() -> Outline:
    # Pointing right: shaft on the left, head on the right.
    return np.array(
        [[-1, -0.22], [0.15, -0.22], [0.15, -0.62], [1, 0], [0.15, 0.62], [0.15, 0.22], [-1, 0.22]]
    )


SHAPES: dict[str, Callable[[], Outline]] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "star": _star,
    "heart": _heart,
    "cross": _cross,
    "crescent": _crescent,
    "arrow": _arrow,
}


def place(outline: Outline, centre: tuple[float, float], radius: float, degrees: float) -> Outline:
    """Scale by `radius` pixels, rotate by `degrees` (counter-clockwise on screen), move to centre."""
    angle = -math.radians(degrees)  # screen y points down
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return outline @ rotation.T * radius + np.asarray(centre)
