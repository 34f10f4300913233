"""GOPro against the plain restatement in reference_gopro.py, on three-block towers with every
weight and learned tensor perturbed: the per-block statistics, style and content mixing, rho and
the shift, the logits, and each loss term on its own with its weight."""

from __future__ import annotations

import pytest
import torch

from models.backbone import Backbone
from models.prompts import Batch, GOPro, GOProConfig
from models.prompts.gopro import nt_xent
from tests.models.perturbed import perturb
from tests.models.prompts import reference_coop
from tests.models.prompts import reference_gopro as ref

NAMES = ["cat", "golden_retriever", "red fox", "airplane", "hot air balloon"]
LABELS = [2, 0, 4]
TOL = {"rtol": 1e-5, "atol": 1e-5}
pytestmark = pytest.mark.usefixtures("one_thread")


def pixels(seed: int, count: int = 3) -> torch.Tensor:
    return torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


VIEWS = (pixels(0), pixels(1), pixels(2))  # original, moco, augmix


@pytest.fixture(scope="module")
def gopro(math_backbone: Backbone) -> GOPro:
    torch.manual_seed(0)
    learner = GOPro(math_backbone, NAMES, GOProConfig(temperature=0.3))
    perturb(learner, seed=41)
    return learner


@pytest.fixture(scope="module")
def reference_terms(gopro: GOPro, math_backbone: Backbone) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return ref.loss_terms(math_backbone.model, gopro, VIEWS, LABELS)


def test_layers_and_shapes(gopro: GOPro) -> None:
    assert len(gopro.style) == len(gopro.content) == 3  # one per ViT block
    assert (gopro.style[0].in_features, gopro.style[0].out_features) == (80, 64)  # Wv -> W
    assert (gopro.rho.in_features, gopro.rho.out_features) == (3, 1)  # across the blocks


def test_shift_from_given_block_tokens(gopro: GOPro) -> None:
    generator = torch.Generator().manual_seed(5)
    tokens = [torch.randn(2, 17, 80, generator=generator) * (i + 1) + i for i in range(3)]  # L x [B, T, Wv]
    with torch.no_grad():
        shift = gopro.prompt_shift(tokens)  # [B, W]
        for b in range(2):
            outputs = [block[b] for block in tokens]
            torch.testing.assert_close(
                shift[b], ref.prompt_shift(gopro, outputs, gopro.config.sigma_eps), **TOL
            )


def test_context_and_logits_equal_the_reference(gopro: GOPro, math_backbone: Backbone) -> None:
    gopro.eval()
    with torch.no_grad():
        features, contexts, matrices = ref.view(math_backbone.model, gopro, VIEWS[0], NAMES)
        got_features, got_ctx = gopro.encode_view(VIEWS[0])
        torch.testing.assert_close(got_features, features, **TOL)
        torch.testing.assert_close(got_ctx, torch.stack(contexts), **TOL)
        logits = torch.stack(
            [
                reference_coop.scaled_cosines(math_backbone.model, f, m)
                for f, m in zip(features, matrices, strict=True)
            ]
        )
        torch.testing.assert_close(gopro.logits(VIEWS[0], NAMES), logits, **TOL)


@pytest.mark.parametrize(("consistency", "contrastive"), [(0.0, 0.0), (0.7, 0.0), (0.0, 0.35), (0.7, 0.35)])
def test_each_loss_term_with_its_weight(
    consistency: float, contrastive: float, gopro: GOPro, reference_terms: dict[str, torch.Tensor]
) -> None:
    gopro.train()
    gopro.config.consistency_weight, gopro.config.contrastive_weight = consistency, contrastive
    batch = Batch(labels=torch.tensor(LABELS), images=VIEWS[0], views={"moco": VIEWS[1], "augmix": VIEWS[2]})
    with torch.no_grad():
        loss = gopro.loss(batch)
    expected = (
        reference_terms["ce"]
        + consistency * reference_terms["consistency"]
        + contrastive * reference_terms["contrastive"]
    )
    torch.testing.assert_close(loss, expected, **TOL)
    assert reference_terms["consistency"] > 1e-4 and reference_terms["contrastive"] > 0.1  # not vanishing


def test_nt_xent_equals_the_row_by_row_statement() -> None:
    generator = torch.Generator().manual_seed(6)
    a, b = torch.randn(5, 12, generator=generator), torch.randn(5, 12, generator=generator)
    for tau in (0.1, 0.5):
        torch.testing.assert_close(nt_xent(a, b, tau), ref.nt_xent(a, b, tau), **TOL)


def test_defaults_are_the_papers() -> None:
    config = GOProConfig()
    assert (config.consistency_weight, config.contrastive_weight, config.temperature) == (1.0, 0.1, 0.1)
    assert (config.n_ctx, config.ctx_init, config.sigma_eps) == (4, "a photo of a", 2.3e-8)
