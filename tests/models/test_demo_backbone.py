"""The bundled demo (models/demo/): the ViT backbone loads through the ordinary backbone path and
classifies held-out world images far above chance (1/64); the three prompt checkpoints `make
serve` serves (one per lane kind) load strictly on it and do too; and zero-shot and CoOp name a
plainly drawn shape on a clean background, the kind of image a user tries first."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader

from models.backbone import build_backbone
from models.checkpoint import load_checkpoint, read_header
from models.prompts import METHODS, PromptLearner
from models.zeroshot import class_embedding_matrix
from training.data import load_dataset
from training.data.dataset import EvalImages, collate
from training.data.transforms import eval_transform
from training.evaluate import evaluate
from training.world import COLOURS, SHAPES, World, WorldConfig
from training.world.shapes import place

DEMO_DIR = Path(__file__).resolve().parents[2] / "models" / "demo"
DEMO = DEMO_DIR / "backbone.safetensors"
ARCH = "clipserve-demo-vit"
# checkpoint -> (method, lane kind the service gives it)
CHECKPOINTS = {"world-coop": "coop", "world-cocoop": "cocoop", "world-maple": "maple"}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def backbone():  # type: ignore[no-untyped-def]
    return build_backbone(ARCH, str(DEMO))


def test_the_demo_folder_is_small_and_the_backbone_describes_itself() -> None:
    assert sum(p.stat().st_size for p in DEMO_DIR.rglob("*") if p.is_file()) <= 30 * 2**20
    header = read_header(DEMO)
    assert header.kind == "backbone" and header.backbone.arch == ARCH
    assert {"command", "seed", "steps"} <= set(header.provenance)
    assert header.metrics["zero_shot_heldout_photo"] >= 90.0
    assert header.classnames == World().classnames


def test_the_demo_backbone_classifies_generated_images(backbone, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    world = World(WorldConfig(seed=read_header(DEMO).provenance["world"]["seed"]))
    # Samples far past the ones the recorded figures used, written and read back as a folder.
    data = load_dataset(world.write_folder(tmp_path, "heldout", per_class=2, style="photo", start=1000))
    loader = DataLoader(
        EvalImages(data.records, eval_transform(backbone.preprocessing)), batch_size=64, collate_fn=collate
    )
    classes = class_embedding_matrix(backbone, data.classnames)  # [64, D], "a photo of a {}."
    correct = total = 0
    for batch in loader:
        assert batch.images is not None
        predictions = (backbone.encode_images(batch.images) @ classes.T).argmax(dim=1)
        correct += int((predictions == batch.labels).sum())
        total += len(batch.labels)
    assert total == 128
    assert correct / total > 0.7  # chance is 1/64; the recorded figure is in the header


def _checkpoint_learner(backbone, name: str) -> PromptLearner:  # type: ignore[no-untyped-def]
    checkpoint = load_checkpoint(DEMO_DIR / "checkpoints" / f"{name}.safetensors", backbone.identity)
    assert checkpoint.header.method == CHECKPOINTS[name]
    assert checkpoint.header.classnames == World().classnames
    return METHODS[checkpoint.header.method].from_checkpoint(backbone, checkpoint)


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_each_demo_checkpoint_loads_and_classifies_fresh_photos(backbone, name: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    learner = _checkpoint_learner(backbone, name)
    data = load_dataset(World().write_folder(tmp_path, "heldout", per_class=1, style="photo", start=2000))
    result = evaluate(learner, data, batch_size=64)
    assert len(result.labels) == 64
    assert result.accuracy > 70.0  # chance is 1.6%; the export-time figures are in each header


def test_the_demo_checkpoints_cover_every_lane_kind(backbone) -> None:  # type: ignore[no-untyped-def]
    learners = {name: _checkpoint_learner(backbone, name) for name in CHECKPOINTS}
    coop, cocoop, maple = learners["world-coop"], learners["world-cocoop"], learners["world-maple"]
    assert not (coop.image_conditioned or coop.custom_image_encoder)  # the shared encoder pass
    assert cocoop.image_conditioned  # its own lane: text per image
    assert maple.custom_image_encoder and not maple.image_conditioned  # its own image lane


def plain_drawing(shape: str, colour: str, size: int = 96) -> Image.Image:
    """The shape filled flat in its colour, centred, on a plain light-grey background."""
    image = Image.new("RGB", (size, size), (205, 205, 205))
    points = place(SHAPES[shape](), (size / 2, size / 2), size * 0.33, 0)
    ImageDraw.Draw(image).polygon([tuple(p) for p in points], fill=COLOURS[colour])
    return image


PLAIN = [("star", "red"), ("circle", "blue"), ("triangle", "green"), ("square", "yellow"), ("heart", "pink")]


@pytest.mark.parametrize("name", ["zeroshot", "world-coop"])
def test_a_plainly_drawn_shape_is_named(backbone, name: str) -> None:  # type: ignore[no-untyped-def]
    world = World()
    if name == "zeroshot":
        classes = class_embedding_matrix(backbone, world.classnames)
    else:
        classes = _checkpoint_learner(backbone, name).class_embeddings(world.classnames)
    transform = eval_transform(backbone.preprocessing)
    images = torch.stack([transform(plain_drawing(shape, colour)) for shape, colour in PLAIN])
    with torch.no_grad():
        predictions = (backbone.encode_images(images) @ classes.T).argmax(dim=1)
    assert [world.classnames[i] for i in predictions] == [f"{c} {s}" for s, c in PLAIN]
