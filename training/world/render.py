"""Drawing one scene with Pillow and numpy: a textured background, then the shape either filled
with shading and a soft shadow ("photo") or traced as a wobbly outline on washed-out paper
("sketch"). Three more styles never appear in pretraining and serve as held-out domains:
"cartoon" (flat fill, dark outline), "neon" (a glowing outline on a darkened background) and
"mosaic" (the photo in coarse blocks). An evaluation condition's extras (conditions.py) add grey
distractor shapes, shrink the object and fade its colour towards the background. Pure functions
of the scene, the extras and the canvas size, so a sample always looks the same."""

from __future__ import annotations

import functools
import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from training.world.conditions import Distractor, Extras
from training.world.shapes import SHAPES, place

if TYPE_CHECKING:
    from training.world.scene import Scene

BACKGROUNDS = ("plain", "striped", "checkered", "dotted", "gradient", "noisy")
PAPER = np.array([246.0, 243.0, 236.0])
NEON_DARK = 0.22  # neon: the background is darkened to this fraction


def render(scene: Scene, size: int, extras: Extras | None = None) -> Image.Image:
    """The scene (with a condition's extras, if any) as a `size` x `size` RGB image."""
    canvas = background(scene, size)  # [S, S, 3] float
    if scene.style == "sketch":
        canvas = canvas * 0.35 + PAPER * 0.65
    elif scene.style == "neon":
        canvas = canvas * NEON_DARK
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    if extras is not None:
        image = _distractors(image, extras.distractors, size)
        scene = _faded(_scaled(scene, extras.scale), extras.contrast, np.asarray(image, np.float32))
    points = place(
        SHAPES[scene.shape](),
        (scene.cx * size, scene.cy * size),
        scene.radius * size,
        scene.rotation,
    )
    return STYLE_DRAWERS[scene.style](image, points, scene, size)


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


def _cartoon(image: Image.Image, points: np.ndarray, scene: Scene, size: int) -> Image.Image:
    """Held-out style: flat colour, no shading or shadow, a dark outline."""
    draw = ImageDraw.Draw(image)
    outline = tuple(int(v * 0.25) for v in scene.rgb)
    draw.polygon([tuple(p) for p in points], fill=tuple(scene.rgb), outline=outline, width=max(1, size // 24))
    return image


def _neon(image: Image.Image, points: np.ndarray, scene: Scene, size: int) -> Image.Image:
    """Held-out style: the outline in the class colour with a blurred glow, on a dark canvas."""
    glow = Image.new("RGB", image.size, (0, 0, 0))
    closed = [tuple(p) for p in np.concatenate([points, points[:1]])]
    ImageDraw.Draw(glow).line(closed, fill=tuple(scene.rgb), width=max(2, size // 12), joint="curve")
    glow = glow.filter(ImageFilter.GaussianBlur(max(1, size // 24)))
    out = np.asarray(image, np.float32) + 1.6 * np.asarray(glow, np.float32)
    image = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    core = tuple(int(min(255, v * 0.5 + 128)) for v in scene.rgb)
    ImageDraw.Draw(image).line(closed, fill=core, width=max(1, size // 40), joint="curve")
    return image


def _mosaic(image: Image.Image, points: np.ndarray, scene: Scene, size: int) -> Image.Image:
    """Held-out style: the photo rendering seen through 12 x 12 coarse blocks."""
    photo = _fill(image, points, scene, size)
    blocks = min(size, 12)
    return photo.resize((blocks, blocks), Image.Resampling.BOX).resize((size, size), Image.Resampling.NEAREST)


STYLE_DRAWERS = {"photo": _fill, "sketch": _trace, "cartoon": _cartoon, "neon": _neon, "mosaic": _mosaic}


def _distractors(image: Image.Image, distractors: tuple[Distractor, ...], size: int) -> Image.Image:
    """Grey shapes drawn on the background, behind the object."""
    draw = ImageDraw.Draw(image)
    for item in distractors:
        points = place(
            SHAPES[item.shape](), (item.cx * size, item.cy * size), item.radius * size, item.rotation
        )
        draw.polygon([tuple(p) for p in points], fill=item.rgb)
    return image


def _scaled(scene: Scene, scale: float) -> Scene:
    return replace(scene, radius=scene.radius * scale) if scale != 1.0 else scene


def _faded(scene: Scene, contrast: float, canvas: np.ndarray) -> Scene:
    """The object's colour moved towards the mean colour of the canvas under it (contrast 1: unchanged)."""
    if contrast == 1.0:
        return scene
    size = canvas.shape[0]
    y, x = _grid(size)
    near = (x - scene.cx) ** 2 + (y - scene.cy) ** 2 <= scene.radius**2
    under = canvas[near].mean(axis=0) if near.any() else canvas.reshape(-1, 3).mean(axis=0)
    rgb = under + contrast * (np.asarray(scene.rgb, np.float32) - under)
    faded = tuple(int(np.clip(round(float(v)), 0, 255)) for v in rgb)
    return replace(scene, rgb=(faded[0], faded[1], faded[2]))
