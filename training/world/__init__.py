"""A procedural image-caption world for pretraining and demonstrating clipserve offline."""

from training.world.conditions import CONDITIONS, Condition
from training.world.scene import ALL_STYLES, COLOURS, HELDOUT_STYLES, STYLES, Scene
from training.world.shapes import SHAPES
from training.world.world import SPLITS, Sample, World, WorldConfig

__all__ = [
    "ALL_STYLES",
    "COLOURS",
    "CONDITIONS",
    "HELDOUT_STYLES",
    "SHAPES",
    "SPLITS",
    "STYLES",
    "Condition",
    "Sample",
    "Scene",
    "World",
    "WorldConfig",
]
