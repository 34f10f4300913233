"""The procedural world: deterministic by seed, 64 balanced classes, disjoint splits, captions
that name what is drawn, and an image-folder export the ordinary data path reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.data import load_dataset
from training.world import COLOURS, SHAPES, STYLES, World, WorldConfig


@pytest.fixture(scope="module")
def world() -> World:
    return World(WorldConfig(seed=0))


def test_same_seed_same_samples_and_pixels(world: World) -> None:
    again = World(WorldConfig(seed=0))
    for index in (0, 1, 63, 500):
        first, second = world.sample("train", index), again.sample("train", index)
        assert first == second
        assert np.array_equal(np.asarray(world.image(first)), np.asarray(again.image(second)))


def test_another_seed_gives_another_world(world: World) -> None:
    other = World(WorldConfig(seed=1))
    assert [world.sample("train", i).scene for i in range(8)] != [
        other.sample("train", i).scene for i in range(8)
    ]


def test_sixty_four_classes_cycle_with_the_index(world: World) -> None:
    assert len(world) == len(SHAPES) * len(COLOURS) == 64
    assert len(set(world.classnames)) == 64
    assert "red star" in world.classnames and "red_star" in world.class_keys
    labels = [world.sample("train", i).label for i in range(128)]
    assert labels == list(range(64)) * 2


def test_heldout_and_training_scenes_never_coincide(world: World) -> None:
    train = [world.sample("train", i).scene for i in range(300)]
    heldout = [world.sample("heldout", i).scene for i in range(300)]
    assert all(world.split_of(s) == "train" for s in train)
    assert all(world.split_of(s) == "heldout" for s in heldout)
    assert not {s.digest() for s in train} & {s.digest() for s in heldout}


def test_style_can_be_fixed_or_drawn(world: World) -> None:
    assert {world.sample("heldout", i, "sketch").scene.style for i in range(20)} == {"sketch"}
    drawn = [world.sample("train", i).scene.style for i in range(400)]
    assert set(drawn) == set(STYLES)
    assert 0.15 < drawn.count("sketch") / len(drawn) < 0.35  # sketch_fraction 0.25


def test_images_have_the_configured_size_and_differ(world: World) -> None:
    images = [world.image(world.sample("train", i)) for i in range(4)]
    assert all(image.size == (64, 64) and image.mode == "RGB" for image in images)
    assert not np.array_equal(np.asarray(images[0]), np.asarray(images[1]))


def test_captions_name_the_colour_and_shape_in_varied_phrasing(world: World) -> None:
    samples = [world.sample("train", i) for i in range(200)]
    for sample in samples:
        assert sample.scene.colour in sample.caption and sample.scene.shape in sample.caption
        assert " a a" not in sample.caption and "{" not in sample.caption
    assert len({s.caption.replace(s.scene.colour, "C").replace(s.scene.shape, "S") for s in samples}) > 40


def test_unknown_split_or_style_is_refused(world: World) -> None:
    with pytest.raises(ValueError, match="split"):
        world.sample("test", 0)
    with pytest.raises(ValueError, match="style"):
        world.sample("train", 0, "painting")


def test_write_folder_is_read_by_the_ordinary_data_path(world: World, tmp_path: Path) -> None:
    root = world.write_folder(tmp_path / "heldout", "heldout", per_class=2, style="photo")
    data = load_dataset(root)
    assert data.classnames == world.classnames  # classnames.txt keeps the world's label order
    assert len(data) == 128 and data.counts() == [2] * 64
    first = data.records[0]
    assert Path(first.path).parent.name == world.class_keys[first.label]
    assert (root / "captions.tsv").read_text().count("\n") == 128
