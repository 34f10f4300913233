"""The bundled demo backbone (models/demo/): it loads through the ordinary backbone path and
classifies held-out world images, read back through the ordinary image-folder data path, far
above chance (1/64)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from models.backbone import build_backbone
from models.checkpoint import read_header
from models.zeroshot import class_embedding_matrix
from training.data import load_dataset
from training.data.dataset import EvalImages, collate
from training.data.transforms import eval_transform
from training.world import World, WorldConfig

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo" / "backbone.safetensors"
ARCH = "clipserve-demo-rn"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_the_demo_checkpoint_is_small_and_describes_itself() -> None:
    assert DEMO.stat().st_size <= 30 * 2**20
    header = read_header(DEMO)
    assert header.kind == "backbone" and header.backbone.arch == ARCH
    assert {"command", "seed", "steps"} <= set(header.provenance)
    assert header.metrics["zero_shot_heldout_photo"] >= 80.0
    assert header.classnames == World().classnames


def test_the_demo_backbone_classifies_generated_images(tmp_path: Path) -> None:
    backbone = build_backbone(ARCH, str(DEMO))
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
    assert correct / total > 0.5  # chance is 1/64; the recorded figure is in the header


def test_the_demo_coop_checkpoint_serves_the_world_classes(tmp_path: Path) -> None:
    """The CoOp checkpoint `make serve` uses as its default model loads strictly on the demo
    backbone and its stored class embeddings classify fresh held-out photos."""
    from models.checkpoint import load_checkpoint
    from models.prompts import METHODS

    backbone = build_backbone(ARCH, str(DEMO))
    checkpoint = load_checkpoint(DEMO.parent / "checkpoints" / "world-coop.safetensors", backbone.identity)
    learner = METHODS[checkpoint.header.method].from_checkpoint(backbone, checkpoint)
    assert checkpoint.class_embeddings is not None and checkpoint.header.classnames == World().classnames
    with torch.no_grad():  # the stored matrix is what the learned prompt gives
        torch.testing.assert_close(learner.class_embeddings(learner.classnames), checkpoint.class_embeddings)
    data = load_dataset(World().write_folder(tmp_path, "heldout", per_class=1, style="photo", start=2000))
    loader = DataLoader(
        EvalImages(data.records, eval_transform(backbone.preprocessing)), batch_size=64, collate_fn=collate
    )
    correct = 0
    for batch in loader:
        assert batch.images is not None
        predictions = (backbone.encode_images(batch.images) @ checkpoint.class_embeddings.T).argmax(dim=1)
        correct += int((predictions == batch.labels).sum())
    assert correct / len(data.records) > 0.8  # 99.8% on 512 held-out photos at export (its header)
