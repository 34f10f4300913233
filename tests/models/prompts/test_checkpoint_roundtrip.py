"""Save every method to THE checkpoint format, load it in a fresh Python process, same logits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from models.backbone import Backbone
from models.checkpoint import load_checkpoint, save_checkpoint
from models.prompts import METHODS, PromptLearner
from tests.conftest import TINY_ARCH, TINY_SEED
from tests.models.prompts.helpers import make_batch, make_images, make_learner, perturbed, train_step

# Runs in a new interpreter: nothing but the files and the registry carries over.
LOAD_AND_SCORE = """
import sys, pathlib, torch
from safetensors.torch import load_file, save_file
from models.backbone import build_backbone
from models.checkpoint import load_checkpoint
from models.prompts import METHODS
folder, arch, seed = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
backbone = build_backbone(arch, pretrained=None, seed=seed)
images = load_file(folder / "images.safetensors")["images"]
logits = {}
for path in sorted(folder.glob("*.ckpt.safetensors")):
    checkpoint = load_checkpoint(path, expected_backbone=backbone.identity)
    learner = METHODS[checkpoint.header.method].from_checkpoint(backbone, checkpoint)
    with torch.no_grad():
        logits[path.name.split(".")[0]] = learner.logits(images, checkpoint.header.classnames).contiguous()
save_file(logits, folder / "logits.safetensors")
"""
# SHIP is checked twice: the full learner, and the CoOp it serves as.
CASES = [*METHODS, "ship-serving"]


def _trained(name: str, backbone: Backbone) -> PromptLearner:
    learner = make_learner(name, backbone).train()
    for stage in learner.training_stages:  # also moves BatchNorm statistics off their init
        learner.set_stage(stage)
        train_step(learner, make_batch(learner))
    return perturbed(learner).eval()


@pytest.fixture(scope="module")
def roundtrip(
    tmp_path_factory: pytest.TempPathFactory, tiny_backbone: Backbone
) -> dict[str, tuple[torch.Tensor, torch.Tensor, PromptLearner]]:
    """{case: (logits here, logits in a fresh process, learner)}; one subprocess for all cases."""
    folder = tmp_path_factory.mktemp("checkpoints")
    images = make_images(tiny_backbone, 3, seed=11)
    save_file({"images": images}, folder / "images.safetensors")
    here: dict[str, tuple[torch.Tensor, PromptLearner]] = {}
    for case in CASES:
        learner = _trained(case.split("-")[0], tiny_backbone)
        learner = learner.serving_learner() if case.endswith("-serving") else learner
        save_checkpoint(folder / f"{case}.ckpt.safetensors", learner.to_checkpoint())
        with torch.no_grad():
            here[case] = (learner.logits(images, learner.classnames), learner)
    command = [sys.executable, "-c", LOAD_AND_SCORE, str(folder), TINY_ARCH, str(TINY_SEED)]
    subprocess.run(command, check=True, cwd=Path(__file__).parents[3], timeout=300)
    there = load_file(folder / "logits.safetensors")
    return {case: (logits, there[case], learner) for case, (logits, learner) in here.items()}


@pytest.mark.parametrize("case", CASES)
def test_fresh_process_gives_identical_logits(case: str, roundtrip: dict) -> None:
    here, there, _ = roundtrip[case]
    assert torch.equal(here, there)


@pytest.mark.parametrize("name", list(METHODS))
def test_checkpoint_holds_state_and_cacheable_class_embeddings(
    name: str, tiny_backbone: Backbone, tmp_path: Path
) -> None:
    learner = _trained(name, tiny_backbone)
    path = save_checkpoint(tmp_path / "c.safetensors", learner.to_checkpoint())
    checkpoint = load_checkpoint(path, expected_backbone=tiny_backbone.identity)
    assert set(checkpoint.tensors) == set(learner.state_dict())
    assert checkpoint.header.method == name and checkpoint.header.classnames == learner.classnames
    if learner.image_conditioned:
        assert checkpoint.class_embeddings is None
        return
    with torch.no_grad():
        assert torch.equal(checkpoint.class_embeddings, learner.class_embeddings(learner.classnames))


def test_ship_serves_as_a_plain_coop(roundtrip: dict) -> None:
    ship_logits, _, ship = roundtrip["ship"]
    served_logits, _, served = roundtrip["ship-serving"]
    assert served.method == "coop" and not served.image_conditioned
    assert served.classnames == ship.classnames  # base and label-only classes alike
    assert torch.equal(ship_logits, served_logits)
