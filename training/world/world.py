"""The procedural image-caption world: 8 shapes x 8 colours = 64 classes ("red star"), each scene
with a size, a position, a background texture and a style ("photo" filled, "sketch" outline).

A sample is a pure function of (world seed, split, index): nothing is stored, any sample can be
regenerated anywhere. Classes cycle with the index (index % 64), so every run of 64 consecutive
indices holds each class once. A scene belongs to the held-out split exactly when its digest is
divisible by `heldout_every`, and each split redraws a scene until it belongs there, so no
held-out image can equal a training image. `write_folder` writes the world out as an ordinary
image folder (one sub-folder per class, and a classnames.txt) for the folder-based data path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from training.data.batches import mixed_seed
from training.data.sources import CLASSNAMES_FILE
from training.world.captions import caption
from training.world.conditions import Condition, Extras, draw_extras
from training.world.render import render
from training.world.scene import ALL_STYLES, COLOURS, Scene, draw_scene
from training.world.shapes import SHAPES

SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 0
    image_size: int = 64  # rendered pixels; models resize to their own input size
    sketch_fraction: float = 0.25  # share of sketches when a sample's style is not fixed
    heldout_every: int = 10  # about 1 scene in this many is held-out material


@dataclass(frozen=True)
class Sample:
    split: str
    index: int
    label: int
    scene: Scene
    caption: str
    extras: Extras | None = None  # an evaluation condition's drawn values; None: the clean scene


class World:
    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = config or WorldConfig()
        # Class order: colour-major, shape-minor ("red circle", "red square", ...).
        self.classes = [(colour, shape) for colour in COLOURS for shape in SHAPES]

    @property
    def classnames(self) -> list[str]:
        return [f"{colour} {shape}" for colour, shape in self.classes]

    @property
    def class_keys(self) -> list[str]:
        """Folder names: the class names with underscores ("red_star")."""
        return [name.replace(" ", "_") for name in self.classnames]

    def __len__(self) -> int:
        return len(self.classes)

    def sample(
        self, split: str, index: int, style: str | None = None, condition: Condition | None = None
    ) -> Sample:
        """Sample `index` of `split`; `style` fixes the style, else it is drawn (photo or sketch,
        sketch_fraction). A `condition` adds its extras to the same scene (conditions.py)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if style is not None and style not in ALL_STYLES:
            raise ValueError(f"style must be one of {ALL_STYLES}, got {style!r}")
        label = index % len(self.classes)
        colour, shape = self.classes[label]
        seed = self.config.seed
        for attempt in range(10_000):
            rng = np.random.default_rng(mixed_seed("scene", seed, split, index, style, attempt))
            drawn = style or ("sketch" if rng.random() < self.config.sketch_fraction else "photo")
            scene = draw_scene(rng, shape, colour, drawn)
            if self.split_of(scene) == split:
                text = caption(scene, np.random.default_rng(mixed_seed("caption", seed, split, index, style)))
                return Sample(split, index, label, scene, text, self._extras(split, index, style, condition))
        raise RuntimeError(f"no {split} scene found for index {index}")  # probability ~ 0

    def _extras(
        self, split: str, index: int, style: str | None, condition: Condition | None
    ) -> Extras | None:
        if condition is None or condition.is_clean():
            return None
        key = mixed_seed("condition", self.config.seed, split, index, style, condition)
        return draw_extras(np.random.default_rng(key), condition)

    def split_of(self, scene: Scene) -> str:
        return "heldout" if scene.digest() % self.config.heldout_every == 0 else "train"

    def image(self, sample: Sample) -> Image.Image:
        return render(sample.scene, self.config.image_size, sample.extras)

    def samples(
        self,
        split: str,
        count: int,
        start: int = 0,
        style: str | None = None,
        condition: Condition | None = None,
    ) -> Iterator[Sample]:
        for index in range(start, start + count):
            yield self.sample(split, index, style, condition)

    def write_folder(
        self,
        root: str | Path,
        split: str,
        per_class: int,
        style: str | None = None,
        start: int = 0,
        condition: Condition | None = None,
    ) -> Path:
        """`per_class` images of every class as root/<class_key>/<split>_<index>.png, plus
        classnames.txt ("red_star red star" lines, in label order) and captions.tsv."""
        root = Path(root)
        for key in self.class_keys:
            (root / key).mkdir(parents=True, exist_ok=True)
        lines = []
        for sample in self.samples(split, per_class * len(self), start * len(self), style, condition):
            name = f"{self.class_keys[sample.label]}/{split}_{sample.index:07d}.png"
            self.image(sample).save(root / name)
            lines.append(f"{name}\t{sample.scene.style}\t{sample.caption}")
        classnames = (f"{k} {n}" for k, n in zip(self.class_keys, self.classnames, strict=True))
        (root / CLASSNAMES_FILE).write_text("\n".join(classnames) + "\n", encoding="utf-8")
        (root / "captions.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return root


def render_many(world: World, samples: Sequence[Sample]) -> list[Image.Image]:
    return [world.image(sample) for sample in samples]
