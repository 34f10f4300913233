"""One scene of the world: every parameter that decides its pixels, drawn from a seeded generator.

Continuous parameters are rounded when drawn, so a scene is a small record of exact values; its
digest decides which split it belongs to (world.py), which is what keeps held-out images and
training images disjoint by construction rather than by luck.
"""

from __future__ import annotations

import colorsys
import hashlib
from dataclasses import dataclass

import numpy as np

from training.world.render import BACKGROUNDS

# Saturated base colours, far apart in hue; backgrounds are nearly grey, so they never compete.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (240, 215, 35),
    "green": (40, 165, 60),
    "cyan": (35, 200, 215),
    "blue": (40, 70, 215),
    "purple": (125, 45, 175),
    "pink": (250, 130, 195),
}
STYLES = ("photo", "sketch")  # the styles of pretraining (and of a sample whose style is drawn)
HELDOUT_STYLES = ("cartoon", "neon", "mosaic")  # never in pretraining: domains for evaluation
ALL_STYLES = STYLES + HELDOUT_STYLES
SIZES: dict[str, tuple[float, float]] = {  # radius as a fraction of the canvas side
    "small": (0.19, 0.26),
    "medium": (0.27, 0.34),
    "large": (0.35, 0.43),
}
MARGIN = 0.03


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    style: str
    size: str
    radius: float  # fraction of the canvas side
    cx: float  # centre, fractions of the canvas
    cy: float
    rotation: int  # degrees, counter-clockwise
    rgb: tuple[int, int, int]
    background: str
    bg_tone: tuple[int, int, int]
    bg_tone2: tuple[int, int, int]
    bg_period: float  # fraction of the canvas
    bg_angle: int
    bg_phase: float
    line_width: float  # sketch strokes, fraction of the canvas
    noise_seed: int

    @property
    def position(self) -> str:
        """Where the shape sits, in words ("top left", "centre", ...)."""
        row = "top" if self.cy < 0.42 else "bottom" if self.cy > 0.58 else ""
        col = "left" if self.cx < 0.42 else "right" if self.cx > 0.58 else ""
        return f"{row} {col}".strip() or "centre"

    def digest(self) -> int:
        """A stable 64-bit digest of every pixel-deciding parameter."""
        # The dataclass repr lists every field with exact (round-trip) float formatting.
        return int.from_bytes(hashlib.blake2b(repr(self).encode(), digest_size=8).digest(), "big")


def draw_scene(rng: np.random.Generator, shape: str, colour: str, style: str) -> Scene:
    size = str(rng.choice(list(SIZES)))
    radius = round(float(rng.uniform(*SIZES[size])), 3)
    low, high = radius + MARGIN, 1 - radius - MARGIN
    cx, cy = (round(float(rng.uniform(low, high)), 3) for _ in range(2))
    tone, tone2 = _background_tones(rng)
    return Scene(
        shape=shape,
        colour=colour,
        style=style,
        size=size,
        radius=radius,
        cx=cx,
        cy=cy,
        rotation=int(rng.integers(-20, 21)),
        rgb=_jitter(rng, COLOURS[colour]),
        background=str(rng.choice(BACKGROUNDS)),
        bg_tone=tone,
        bg_tone2=tone2,
        bg_period=round(float(rng.uniform(0.08, 0.2)), 3),
        bg_angle=int(rng.integers(0, 180)),
        bg_phase=round(float(rng.uniform(0, 1)), 2),
        line_width=round(float(rng.uniform(0.025, 0.04)), 3),
        noise_seed=int(rng.integers(0, 2**31 - 1)),
    )


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    gain = rng.uniform(0.88, 1.06)
    r, g, b = (int(np.clip(v * gain + rng.integers(-12, 13), 0, 255)) for v in rgb)
    return r, g, b


def _background_tones(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Two nearly grey tones (saturation <= 0.12) of one hue, 30-60 levels apart."""
    hue, saturation = rng.uniform(0, 1), rng.uniform(0, 0.12)
    value = rng.uniform(0.25, 0.8)
    delta = rng.uniform(0.12, 0.24) * (1 if value < 0.55 else -1)

    def tone(v: float) -> tuple[int, int, int]:
        r, g, b = colorsys.hsv_to_rgb(hue, saturation, v)
        return round(r * 255), round(g * 255), round(b * 255)

    return tone(value), tone(value + delta)
