"""Identities that pin each method's math to CLIP's own text and image paths."""

from __future__ import annotations

import torch
from torch import nn

from models.backbone import Backbone
from models.prompts import CoCoOp, CoOp, CoOpConfig, GOPro, MaPLe, MaPLeConfig
from models.prompts.class_prompts import ClassPrompts
from models.prompts.maple import _patch_tokens
from models.text import encode_texts, encode_token_embeddings
from models.zeroshot import class_name_text
from tests.models.prompts.helpers import MANY_CLASSES, make_images, make_learner, perturbed

TEMPLATE = "a photo of a {}."


def _template_features(backbone: Backbone) -> torch.Tensor:
    return encode_texts(backbone, [TEMPLATE.format(class_name_text(n)) for n in MANY_CLASSES])


def _zero(layer: nn.Linear) -> None:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)


def test_coop_from_words_equals_the_template(tiny_backbone: Backbone) -> None:
    coop = CoOp(tiny_backbone, MANY_CLASSES, CoOpConfig(n_ctx=16, ctx_init="a photo of a"))
    assert coop.n_ctx == 4  # word init overrides n_ctx with the number of init tokens
    with torch.no_grad():
        assert torch.equal(coop.class_embeddings(MANY_CLASSES), _template_features(tiny_backbone))


def test_maple_without_deep_prompts_equals_the_template(tiny_backbone: Backbone) -> None:
    maple = MaPLe(tiny_backbone, MANY_CLASSES, MaPLeConfig(prompt_depth=1))
    assert maple.n_ctx == 2  # learns "a photo"; "of a" stays in the frozen suffix
    with torch.no_grad():
        assert torch.equal(maple.class_embeddings(MANY_CLASSES), _template_features(tiny_backbone))


def test_maple_deep_prompts_change_text_features(tiny_backbone: Backbone) -> None:
    maple = MaPLe(tiny_backbone, MANY_CLASSES, MaPLeConfig(prompt_depth=2))
    with torch.no_grad():
        assert not torch.allclose(maple.class_embeddings(MANY_CLASSES), _template_features(tiny_backbone))


def test_maple_patch_tokens_match_open_clip_embeds(tiny_backbone: Backbone) -> None:
    visual = tiny_backbone.model.visual
    images = make_images(tiny_backbone, 2, seed=0)
    with torch.no_grad():
        assert torch.equal(visual.ln_pre(_patch_tokens(visual, images)), visual._embeds(images))


def test_cocoop_with_zeroed_meta_net_equals_coop(tiny_backbone: Backbone) -> None:
    cocoop = perturbed(make_learner("cocoop", tiny_backbone))
    assert isinstance(cocoop, CoCoOp)
    _zero(cocoop.meta_net[-1])
    coop = CoOp(tiny_backbone, MANY_CLASSES, CoOpConfig(n_ctx=4, ctx_init="a photo of a"))
    coop.ctx.data.copy_(cocoop.ctx.data)
    images = make_images(tiny_backbone, 3, seed=0)
    with torch.no_grad():
        torch.testing.assert_close(cocoop.logits(images, MANY_CLASSES), coop.logits(images, MANY_CLASSES))


def test_gopro_with_zeroed_mixer_equals_coop(tiny_backbone: Backbone) -> None:
    gopro = perturbed(make_learner("gopro", tiny_backbone)).eval()
    assert isinstance(gopro, GOPro)
    _zero(gopro.rho)
    coop = CoOp(tiny_backbone, MANY_CLASSES, CoOpConfig(n_ctx=4, ctx_init="a photo of a"))
    coop.ctx.data.copy_(gopro.ctx.data)
    images = make_images(tiny_backbone, 3, seed=0)
    with torch.no_grad():
        torch.testing.assert_close(gopro.logits(images, MANY_CLASSES), coop.logits(images, MANY_CLASSES))


def test_class_chunking_does_not_change_per_image_logits(tiny_backbone: Backbone) -> None:
    cocoop = perturbed(make_learner("cocoop", tiny_backbone)).eval()
    images = make_images(tiny_backbone, 3, seed=0)
    with torch.no_grad():
        whole = cocoop.logits(images, MANY_CLASSES)
        cocoop.config.text_chunk = 3  # one class per text call for a batch of 3
        torch.testing.assert_close(cocoop.logits(images, MANY_CLASSES), whole)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_backbone: Backbone) -> None:
    grads = []
    for checkpointing in (False, True):
        cocoop = make_learner("cocoop", tiny_backbone, grad_checkpoint=checkpointing, text_chunk=4)
        cocoop.logits(make_images(tiny_backbone, 2, seed=0), MANY_CLASSES).sum().backward()
        grads.append(cocoop.ctx.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_trimmed_and_per_image_prompts_are_exact(tiny_backbone: Backbone) -> None:
    prompts = ClassPrompts(tiny_backbone, MANY_CLASSES, n_ctx=4, ctx_init="a photo of a")
    ctx = torch.randn(2, 4, tiny_backbone.text_width)  # [B, n_ctx, W]
    trimmed = prompts.trimmed()
    assert trimmed.suffix.shape[1] + 1 + 4 == int(prompts.eot_index.max()) + 1
    per_image = trimmed.assemble_per_image(ctx)  # [B * C, L', W]
    with torch.no_grad():
        batched = encode_token_embeddings(tiny_backbone, per_image, trimmed.eot_index.repeat(2))
        for b in range(2):
            one = encode_token_embeddings(tiny_backbone, prompts.assemble(ctx[b]), prompts.eot_index)
            torch.testing.assert_close(batched[b * len(prompts) : (b + 1) * len(prompts)], one)
