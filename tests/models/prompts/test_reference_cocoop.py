"""CoCoOp against the plain restatement in reference_coop.py: each image paired with its own
shifted context, the same shift on every context vector, the meta-net's input and shapes."""

from __future__ import annotations

import pytest
import torch

from models.backbone import Backbone
from models.prompts import Batch, CoCoOp, CoCoOpConfig
from tests.models.perturbed import perturb
from tests.models.prompts import reference_coop as ref
from tests.models.reference_clip import cross_entropy

NAMES = ["cat", "golden_retriever", "red fox", "airplane", "hot air balloon"]
TOL = {"rtol": 1e-5, "atol": 1e-5}
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cocoop(math_backbone: Backbone) -> CoCoOp:
    torch.manual_seed(0)
    learner = CoCoOp(math_backbone, NAMES, CoCoOpConfig())
    perturb(learner, seed=21)
    return learner.eval()


def images(count: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_meta_net_shapes_and_input(cocoop: CoCoOp, math_backbone: Backbone) -> None:
    first, _, last = cocoop.meta_net
    assert (first.in_features, first.out_features) == (48, 48 // 16)  # D -> D / 16
    assert (last.in_features, last.out_features) == (48 // 16, math_backbone.text_width)  # -> W
    seen: list[torch.Tensor] = []
    hook = cocoop.meta_net.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    pixels = images()
    try:
        with torch.no_grad():
            cocoop.logits(pixels, NAMES)
    finally:
        hook.remove()
    expected = ref.stock_image_features(math_backbone.model, pixels)  # normalised, image by image
    torch.testing.assert_close(seen[0], expected, **TOL)


def test_the_same_shift_is_added_to_every_context_vector(cocoop: CoCoOp) -> None:
    shift = torch.randn(3, cocoop.ctx.shape[1], generator=torch.Generator().manual_seed(1))  # [B, W]
    with torch.no_grad():
        result = cocoop.shifted_context(shift)  # [B, n_ctx, W]
        for b in range(3):
            assert torch.equal(result[b], torch.stack(ref.shifted(cocoop.ctx, shift[b])))


def test_logits_pair_each_image_with_its_own_context(cocoop: CoCoOp, math_backbone: Backbone) -> None:
    pixels = images()
    with torch.no_grad():
        expected, matrices = ref.cocoop_logits(
            math_backbone.model, pixels, NAMES, cocoop.ctx, cocoop.meta_net
        )
        torch.testing.assert_close(cocoop.logits(pixels, NAMES), expected, **TOL)
        features = ref.stock_image_features(math_backbone.model, pixels)
        torch.testing.assert_close(cocoop.logits_from_features(features, NAMES), expected, **TOL)
        ctx = cocoop.shifted_context(cocoop.meta_net(features))
        per_image = cocoop.per_image_class_features(ctx, NAMES)  # [B, C, D]
    assert per_image.shape == (3, len(NAMES), 48)
    for b in range(3):
        torch.testing.assert_close(per_image[b], matrices[b], **TOL)
    # Different images give different class matrices (the conditioning is real).
    assert (per_image[0] - per_image[1]).abs().max() > 1e-3


def test_the_loss_is_cross_entropy_over_the_reference_logits(math_backbone: Backbone) -> None:
    torch.manual_seed(0)
    learner = CoCoOp(math_backbone, NAMES, CoCoOpConfig())
    perturb(learner, seed=22)
    pixels, labels = images(2, seed=4), [4, 1]
    loss = learner.train().loss(Batch(labels=torch.tensor(labels), images=pixels))
    with torch.no_grad():
        logits, _ = ref.cocoop_logits(math_backbone.model, pixels, NAMES, learner.ctx, learner.meta_net)
    torch.testing.assert_close(loss.detach(), cross_entropy(logits, labels), **TOL)
