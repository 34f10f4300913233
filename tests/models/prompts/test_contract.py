"""The contract every method in METHODS keeps, generated from the registry (no exceptions)."""

from __future__ import annotations

import pytest
import torch

from models.backbone import Backbone
from models.prompts import METHODS, UnsupportedBackboneError
from models.text import TextTooLongError
from tests.models.prompts.helpers import (
    MANY_CLASSES,
    ONE_CLASS,
    STAGE_CASES,
    make_batch,
    make_images,
    make_learner,
    seeded_loss,
    train_step,
)

NAMES = list(METHODS)
LONG_NAME = " ".join(["extraordinarily"] * 80)


def _normalised(x: torch.Tensor) -> bool:
    return torch.allclose(x.norm(dim=-1), torch.ones(x.shape[0]), atol=1e-4)


@pytest.mark.parametrize("classnames", [ONE_CLASS, MANY_CLASSES], ids=["1-class", "5-classes"])
@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_dtypes(name: str, classnames: list[str], tiny_backbone: Backbone) -> None:
    learner = make_learner(name, tiny_backbone, classnames).eval()
    images = make_images(tiny_backbone, 3, seed=0)
    with torch.no_grad():
        logits = learner.logits(images, classnames)
        image_features = learner.image_embeddings(images)
    assert logits.shape == (3, len(classnames)) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert image_features.shape == (3, tiny_backbone.embed_dim) and _normalised(image_features)
    if learner.image_conditioned:
        with pytest.raises(TypeError, match="image-conditioned"):
            learner.class_embeddings(classnames)
        return
    with torch.no_grad():
        classes = learner.class_embeddings(classnames)
    assert classes.shape == (len(classnames), tiny_backbone.embed_dim) and classes.dtype == torch.float32
    assert _normalised(classes)


@pytest.mark.parametrize(("name", "stage"), STAGE_CASES)
def test_backbone_stays_frozen_in_eval_mode(name: str, stage: str, tiny_backbone: Backbone) -> None:
    learner = make_learner(name, tiny_backbone).train()
    learner.set_stage(stage)
    seeded_loss(learner, make_batch(learner)).backward()
    model = tiny_backbone.model
    assert not any(module.training for module in model.modules())
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


@pytest.mark.parametrize(("name", "stage"), STAGE_CASES)
def test_only_own_tensors_get_gradients(name: str, stage: str, tiny_backbone: Backbone) -> None:
    learner = make_learner(name, tiny_backbone).train()
    learner.set_stage(stage)
    seeded_loss(learner, make_batch(learner)).backward()
    trainable = {n for n, p in learner.named_parameters() if p.requires_grad}
    with_grad = {n for n, p in learner.named_parameters() if p.grad is not None}
    assert trainable and with_grad == trainable, "every trainable tensor, and only those, gets a gradient"
    assert {id(p) for p in learner.trainable_parameters()} == {
        id(p) for n, p in learner.named_parameters() if n in trainable
    }


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_holds_only_learned_tensors(name: str, tiny_backbone: Backbone) -> None:
    learner = make_learner(name, tiny_backbone)
    state = learner.state_dict()
    own = {n for n, _ in learner.named_parameters()} | {n for n, _ in learner.named_buffers()}
    assert set(state) <= own
    backbone_storage = {p.data_ptr() for p in tiny_backbone.model.state_dict().values()}
    assert not any(t.data_ptr() in backbone_storage for t in state.values())
    # Frozen prompt parts are rebuilt from class names, never saved.
    assert not any(word in key for key in state for word in ("prefix", "suffix", "token"))


@pytest.mark.parametrize(("name", "stage"), STAGE_CASES)
def test_one_optimiser_step_lowers_the_loss(name: str, stage: str, tiny_backbone: Backbone) -> None:
    learner = make_learner(name, tiny_backbone).train()
    learner.set_stage(stage)
    batch = make_batch(learner)
    before = seeded_loss(learner, batch).item()
    train_step(learner, batch, lr=1e-3)
    after = seeded_loss(learner, batch).item()
    assert after < before


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_result(name: str, tiny_backbone: Backbone) -> None:
    results = []
    for _ in range(2):
        learner = make_learner(name, tiny_backbone, seed=7).train()
        batch = make_batch(learner, seed=3)
        train_step(learner, batch)
        loss = seeded_loss(learner, batch, seed=5)
        with torch.no_grad():
            logits = learner.eval().logits(batch.images, learner.classnames)  # type: ignore[arg-type]
        results.append((loss.detach(), logits))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


@pytest.mark.parametrize("name", NAMES)
def test_too_long_class_name_is_a_clear_error(name: str, tiny_backbone: Backbone) -> None:
    images = make_images(tiny_backbone, 2, seed=0)
    learner = make_learner(name, tiny_backbone).eval()
    with pytest.raises(TextTooLongError, match="too long"), torch.no_grad():
        learner.logits(images, ["cat", LONG_NAME])
    with pytest.raises(TextTooLongError), torch.no_grad():
        make_learner(name, tiny_backbone, ["cat", LONG_NAME]).eval().logits(images, ["cat", LONG_NAME])


def test_vit_only_methods_are_exactly_maple_and_gopro() -> None:
    assert {name for name, cls in METHODS.items() if cls.requires_vit} == {"maple", "gopro"}


@pytest.mark.parametrize("name", NAMES)
def test_resnet_backbone_works_or_is_refused_clearly(name: str, tiny_rn_backbone: Backbone) -> None:
    if METHODS[name].requires_vit:
        with pytest.raises(UnsupportedBackboneError, match="needs a ViT image tower"):
            make_learner(name, tiny_rn_backbone)
        return
    learner = make_learner(name, tiny_rn_backbone).train()
    for stage in learner.training_stages:
        learner.set_stage(stage)
        seeded_loss(learner, make_batch(learner)).backward()
    with torch.no_grad():
        logits = learner.eval().logits(make_images(tiny_rn_backbone, 2, seed=0), MANY_CLASSES)
    assert logits.shape == (2, len(MANY_CLASSES)) and torch.isfinite(logits).all()
    assert not any(module.training for module in tiny_rn_backbone.model.modules())
