"""MaPLe against the plain restatement in reference_maple.py, on three-block towers with every
weight and learned tensor perturbed: J = 3 (deep prompts before blocks 1 and 2) and J = 2 (block 2
runs on what block 1 made of its prompts)."""

from __future__ import annotations

import pytest
import torch

from models.backbone import Backbone
from models.prompts import MaPLe, MaPLeConfig
from tests.models.perturbed import perturb
from tests.models.prompts import reference_coop
from tests.models.prompts import reference_maple as ref

NAMES = ["cat", "golden_retriever", "red fox", "airplane", "hot air balloon"]
TOL = {"rtol": 1e-5, "atol": 1e-5}
pytestmark = pytest.mark.usefixtures("one_thread")


def maple(backbone: Backbone, depth: int) -> MaPLe:
    torch.manual_seed(0)
    learner = MaPLe(backbone, NAMES, MaPLeConfig(prompt_depth=depth))
    perturb(learner, seed=31 + depth)
    return learner.eval()


def images(count: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("depth", [2, 3])
def test_text_features_equal_the_reference(depth: int, math_backbone: Backbone) -> None:
    learner = maple(math_backbone, depth)
    assert len(learner.deep_text) == depth - 1
    with torch.no_grad():
        expected = ref.maple_class_features(math_backbone.model, learner.ctx, learner.deep_text, NAMES)
        torch.testing.assert_close(learner.class_embeddings(NAMES), expected, **TOL)


@pytest.mark.parametrize("depth", [2, 3])
def test_image_features_and_logits_equal_the_reference(depth: int, math_backbone: Backbone) -> None:
    learner = maple(math_backbone, depth)
    pixels = images()
    with torch.no_grad():
        expected = ref.maple_image_features(
            math_backbone.model, pixels, learner.ctx, learner.proj, learner.deep_text, learner.deep_proj
        )
        torch.testing.assert_close(learner.image_embeddings(pixels), expected, **TOL)
        classes = ref.maple_class_features(math_backbone.model, learner.ctx, learner.deep_text, NAMES)
        logits = torch.stack(
            [reference_coop.scaled_cosines(math_backbone.model, f, classes) for f in expected]
        )
        torch.testing.assert_close(learner.logits(pixels, NAMES), logits, **TOL)


def test_initial_prompts_follow_the_reference_code(math_backbone: Backbone) -> None:
    learner = MaPLe(math_backbone, NAMES, MaPLeConfig(prompt_depth=3))
    words = reference_coop.word_ids("a photo of a")
    assert learner.n_ctx == 2  # learns "a photo"; "of a" stays fixed
    assert torch.equal(learner.ctx.detach(), math_backbone.model.token_embedding.weight[words[:2]].detach())
    # The reference clones one Linear for every deep coupling: they start equal, the first differs.
    first, *rest = learner.deep_proj
    for layer in rest:
        assert torch.equal(layer.weight, first.weight) and torch.equal(layer.bias, first.bias)
        assert layer.weight.data_ptr() != first.weight.data_ptr()  # copies, not one shared layer
    assert not torch.equal(learner.proj.weight, first.weight)
