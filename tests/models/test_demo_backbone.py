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
