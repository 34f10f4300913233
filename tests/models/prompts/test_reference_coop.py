"""CoOp against the plain restatement in reference_coop.py, on perturbed weights and context:
the exact token sequence and EOT index, every class-token position, unified and class-specific."""

from __future__ import annotations

import pytest
import torch

from models.backbone import Backbone
from models.prompts import Batch, CoOp, CoOpConfig
from tests.models.perturbed import perturb
from tests.models.prompts import reference_coop as ref
from tests.models.reference_clip import cross_entropy

NAMES = ["cat", "golden_retriever", "red fox", "airplane", "hot air balloon"]  # 1, 2, 2, 1, 3 tokens
TOL = {"rtol": 1e-5, "atol": 1e-5}
pytestmark = pytest.mark.usefixtures("one_thread")
CASES = [(position, csc) for position in ("end", "middle", "front") for csc in (False, True)]


def images(count: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def coop(backbone: Backbone, position: str, class_specific: bool, n_ctx: int = 3) -> CoOp:
    torch.manual_seed(0)
    learner = CoOp(backbone, NAMES, CoOpConfig(n_ctx=n_ctx, position=position, class_specific=class_specific))
    perturb(learner, seed=11)
    return learner.eval()


@pytest.mark.parametrize(("position", "class_specific"), CASES)
def test_prompt_tokens_and_eot_index_are_exactly_the_papers(
    position: str, class_specific: bool, math_backbone: Backbone
) -> None:
    learner = coop(math_backbone, position, class_specific)
    prompts = learner.class_prompts(NAMES)
    with torch.no_grad():
        assembled = prompts.assemble(learner.ctx)  # [C, L, W]
    assert assembled.shape == (len(NAMES), math_backbone.context_length, math_backbone.text_width)
    for c, name in enumerate(NAMES):
        context = learner.ctx[c] if class_specific else learner.ctx
        tokens, eot = ref.prompt_tokens(math_backbone.model, context, name, position)
        assert int(prompts.eot_index[c]) == eot == 1 + 3 + len(ref.name_ids(name)) + 1
        assert torch.equal(assembled[c], torch.stack(tokens).detach()), f"{position}: {name}"


@pytest.mark.parametrize(("position", "class_specific"), CASES)
def test_class_embeddings_and_logits_equal_the_reference(
    position: str, class_specific: bool, math_backbone: Backbone
) -> None:
    learner = coop(math_backbone, position, class_specific)
    pixels = images()
    with torch.no_grad():
        expected = ref.class_features(math_backbone.model, learner.ctx, NAMES, position)
        torch.testing.assert_close(learner.class_embeddings(NAMES), expected, **TOL)
        reference_logits = ref.coop_logits(math_backbone.model, pixels, expected)
        torch.testing.assert_close(learner.logits(pixels, NAMES), reference_logits, **TOL)


def test_word_init_uses_the_init_words_as_the_context(math_backbone: Backbone) -> None:
    learner = CoOp(math_backbone, NAMES, CoOpConfig(n_ctx=16, ctx_init="a photo of a"))
    words = ref.word_ids("a photo of a")
    assert learner.n_ctx == len(words) == 4
    assert torch.equal(learner.ctx.detach(), math_backbone.model.token_embedding.weight[words].detach())
    perturb(learner, seed=12)
    with torch.no_grad():
        expected = ref.class_features(math_backbone.model, learner.ctx, NAMES)
        torch.testing.assert_close(learner.class_embeddings(NAMES), expected, **TOL)


def test_the_loss_is_cross_entropy_over_the_reference_logits(math_backbone: Backbone) -> None:
    learner = coop(math_backbone, "end", False).train()
    pixels, labels = images(4, seed=1), [3, 0, 4, 1]
    loss = learner.loss(Batch(labels=torch.tensor(labels), images=pixels))
    with torch.no_grad():
        classes = ref.class_features(math_backbone.model, learner.ctx, NAMES)
        expected = cross_entropy(ref.coop_logits(math_backbone.model, pixels, classes), labels)
    torch.testing.assert_close(loss.detach(), expected, **TOL)
