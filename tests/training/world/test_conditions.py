"""Evaluation conditions and held-out styles: they change pixels, never which scenes exist, and a
condition-free sample is exactly the plain world's."""

from __future__ import annotations

import numpy as np
import pytest

from training.world import COLOURS, CONDITIONS, HELDOUT_STYLES, STYLES, World, WorldConfig
from training.world.conditions import Condition, combined, draw_extras
from training.world.render import render


@pytest.fixture(scope="module")
def world() -> World:
    return World(WorldConfig(seed=0))


def test_a_condition_keeps_the_scene_its_split_and_caption(world: World) -> None:
    for index in (0, 5, 77):
        plain = world.sample("heldout", index, "photo")
        hard = world.sample("heldout", index, "photo", CONDITIONS["hard"])
        assert hard.scene == plain.scene and hard.caption == plain.caption and hard.label == plain.label
        assert plain.extras is None and hard.extras is not None
        assert not np.array_equal(np.asarray(world.image(plain)), np.asarray(world.image(hard)))


def test_the_clean_condition_is_the_plain_world(world: World) -> None:
    plain = world.sample("train", 3)
    clean = world.sample("train", 3, condition=CONDITIONS["clean"])
    assert clean == plain
    assert np.array_equal(np.asarray(world.image(plain)), np.asarray(world.image(clean)))


def test_extras_are_deterministic_and_within_their_ranges(world: World) -> None:
    condition = CONDITIONS["hard"]
    for index in range(20):
        first = world.sample("heldout", index, "photo", condition).extras
        again = World(WorldConfig(seed=0)).sample("heldout", index, "photo", condition).extras
        assert first == again and first is not None
        assert condition.distractors[0] <= len(first.distractors) <= condition.distractors[1]
        assert condition.scale[0] <= first.scale <= condition.scale[1]
        assert condition.contrast[0] <= first.contrast <= condition.contrast[1]


def test_distractors_are_grey_never_a_class_colour() -> None:
    extras = draw_extras(np.random.default_rng(0), Condition(distractors=(50, 50)))
    for item in extras.distractors:
        assert max(item.rgb) - min(item.rgb) <= 20  # grey up to a small tint
    for rgb in COLOURS.values():
        assert max(rgb) - min(rgb) > 100  # every class colour is far from grey


def test_low_contrast_moves_the_object_colour_towards_the_background(world: World) -> None:
    sample = world.sample("heldout", 2, "photo")  # a red triangle
    faded = world.sample("heldout", 2, "photo", Condition(contrast=(0.2, 0.2)))
    assert faded.extras is not None
    pixels = np.asarray(render(sample.scene, 64)).astype(float)
    faded_pixels = np.asarray(render(sample.scene, 64, faded.extras)).astype(float)
    centre = (int(sample.scene.cy * 64), int(sample.scene.cx * 64))
    red_gap = lambda p: p[centre][0] - p[centre][1:].mean()  # noqa: E731
    assert red_gap(faded_pixels) < 0.5 * red_gap(pixels)


def test_combined_strength_zero_is_clean_and_one_is_the_hard_preset() -> None:
    assert combined(0.0).is_clean()
    assert combined(1.0) == CONDITIONS["hard"]


@pytest.mark.parametrize("style", HELDOUT_STYLES)
def test_held_out_styles_render_and_are_not_drawn_for_pretraining(world: World, style: str) -> None:
    sample = world.sample("heldout", 11, style)
    assert sample.scene.style == style and sample.caption
    image = np.asarray(world.image(sample))
    assert image.shape == (64, 64, 3) and image.std() > 5
    drawn = {world.sample("train", i).scene.style for i in range(200)}
    assert drawn == set(STYLES)
