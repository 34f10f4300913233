"""Drawing one scene with Pillow and numpy: a textured background, then the shape either filled
with shading and a soft shadow ("photo") or traced as a wobbly outline on washed-out paper
("sketch"). Pure functions of the scene and the canvas size, so a scene always looks the same."""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from training.world.shapes import SHAPES, place

if TYPE_CHECKING:
    from training.world.scene import Scene

BACKGROUNDS = ("plain", "striped", "checkered", "dotted", "gradient", "noisy")
PAPER = np.array([246.0, 243.0, 236.0])


def render(scene: Scene, size: int) -> Image.Image:
    """The scene as a `size` x `size` RGB image."""
    canvas = background(scene, size)  # [S, S, 3] float
    if scene.style == "sketch":
        canvas = canvas * 0.35 + PAPER * 0.65
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    points = place(
        SHAPES[scene.shape](),
        (scene.cx * size, scene.cy * size),
        scene.radius * size,
        scene.rotation,
    )
    if scene.style == "sketch":
        return _trace(image, points, scene, size)
    return _fill(image, points, scene, size)


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates as fractions of the canvas: (y, x), each [S, S] float32."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return y, x


def background(scene: Scene, size: int) -> np.ndarray:
    """[S, S, 3] float texture in the scene's two background tones."""
    y, x = _grid(size)
    tone, other = np.asarray(scene.bg_tone, np.float32), np.asarray(scene.bg_tone2, np.float32)
    period = scene.bg_period
    angle = math.radians(scene.bg_angle)
    u = x * math.cos(angle) + y * math.sin(angle)  # coordinate across the stripes / gradient
    kind = scene.background
    if kind == "plain":
        weight = np.zeros_like(x)
    elif kind == "striped":
        weight = (np.floor(u / period + scene.bg_phase) % 2 == 0).astype(float)
    elif kind == "checkered":
        weight = ((np.floor(x / period + scene.bg_phase) + np.floor(y / period)) % 2 == 0).astype(float)
    elif kind == "dotted":
        fx = (x / period + scene.bg_phase) % 1 - 0.5
        fy = (y / period) % 1 - 0.5
        weight = (fx**2 + fy**2 < 0.09).astype(float)
    elif kind == "gradient":
        weight = np.clip(u - u.min(), 0, None) / max(float(np.ptp(u)), 1e-9)
    elif kind == "noisy":
        rng = np.random.default_rng(scene.noise_seed)
        coarse = rng.random((max(2, size // 6), max(2, size // 6)))
        weight = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size))) / 255.0
    else:
        raise ValueError(f"unknown background {kind!r}; known: {BACKGROUNDS}")
    canvas = tone * (1 - weight[..., None]) + other * weight[..., None]
    grain = np.random.default_rng(scene.noise_seed + 1).normal(0, 4.0, (size, size, 1)).astype(np.float32)
    return canvas + grain


def _mask(points: np.ndarray, size: int) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in points], fill=255)
    return mask


def _fill(image: Image.Image, points: np.ndarray, scene: Scene, size: int) -> Image.Image:
    """Photo style: a soft drop shadow, then the filled shape lit from the top left."""
    shift = max(1, size // 40)
    shadow = _mask(points + shift, size).filter(ImageFilter.GaussianBlur(max(1, size // 50)))
    base = np.asarray(image, dtype=np.float32)
    darkened = base * (1 - 0.45 * np.asarray(shadow, dtype=np.float32)[..., None] / 255)
    y, x = _grid(size)
    light = 1.12 - 0.3 * ((x - scene.cx + y - scene.cy) / (4 * scene.radius) + 0.5)
    colour = np.asarray(scene.rgb, dtype=np.float32) * np.clip(light, 0.75, 1.15)[..., None]
    alpha = np.asarray(_mask(points, size), dtype=np.float32)[..., None] / 255
    out = darkened * (1 - alpha) + np.clip(colour, 0, 255) * alpha
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def _trace(image: Image.Image, points: np.ndarray, scene: Scene, size: int) -> Image.Image:
    """Sketch style: the outline drawn twice with a little hand jitter, no fill."""
    rng = np.random.default_rng(scene.noise_seed + 2)
    draw = ImageDraw.Draw(image)
    width = max(1, round(scene.line_width * size))
    for _ in range(2):
        wobble = points + rng.normal(0, 0.006 * size, points.shape)
        closed = [tuple(p) for p in np.concatenate([wobble, wobble[:1]])]
        draw.line(closed, fill=tuple(scene.rgb), width=width, joint="curve")
    return image
