"""A procedural image-caption world for pretraining and demonstrating clipserve offline."""

from training.world.scene import COLOURS, STYLES, Scene
from training.world.shapes import SHAPES
from training.world.world import SPLITS, Sample, World, WorldConfig

__all__ = ["COLOURS", "SHAPES", "SPLITS", "STYLES", "Sample", "Scene", "World", "WorldConfig"]
