"""The one text path: equal to open_clip's encode_text, truncated, deep prompts, strict tokenizing."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
import torch
import torch.nn.functional as F

from models.backbone import Backbone, build_backbone
from models.text import (
    TextTooLongError,
    embed_tokens,
    encode_texts,
    encode_token_embeddings,
    token_count,
    tokenize,
)

PROMPTS = [
    "a photo of a dog.",
    "a photo of a golden retriever, a type of pet.",
    "x",
    "a blurry photo of the hard-to-see Chrysler Town & Country minivan 2012, seen from far away.",
]


@pytest.fixture(scope="module")
def vit_b32() -> Iterator[Backbone]:
    """A random-weight ViT-B-32 (~150M parameters): built once for this module."""
    backbone = build_backbone("ViT-B-32", None)
    yield backbone
    del backbone


def _ours(backbone: Backbone, texts: Sequence[str]) -> torch.Tensor:
    tokenized = tokenize(backbone, texts)
    embeddings = embed_tokens(backbone, tokenized.tokens)
    with torch.no_grad():
        return encode_token_embeddings(backbone, embeddings, tokenized.eot_index)


@pytest.mark.parametrize("which", ["tiny", "vit_b32"])
def test_equals_open_clip_encode_text(which: str, request: pytest.FixtureRequest) -> None:
    backbone: Backbone = request.getfixturevalue("tiny_backbone" if which == "tiny" else "vit_b32")
    tokens = backbone.tokenizer(PROMPTS)  # [N, 77], open_clip's own tokenizer
    assert torch.equal(tokenize(backbone, PROMPTS).tokens, tokens)
    with torch.no_grad():
        reference = backbone.model.encode_text(tokens)  # the full 77-token context
    ours = _ours(backbone, PROMPTS)
    assert ours.dtype == torch.float32 and ours.shape == reference.shape
    assert (ours - reference).abs().max().item() < 1e-5
    assert reference.abs().max().item() > 1e-2  # not trivially equal near zero


def test_runs_only_up_to_the_longest_eot(tiny_backbone: Backbone) -> None:
    lengths: list[int] = []
    block = tiny_backbone.model.transformer.resblocks[0]
    handle = block.register_forward_pre_hook(lambda _module, args: lengths.append(args[0].shape[1]))
    try:
        _ours(tiny_backbone, PROMPTS[:2])
    finally:
        handle.remove()
    longest = int(tokenize(tiny_backbone, PROMPTS[:2]).eot_index.max()) + 1
    assert lengths == [longest] and longest < 20  # instead of the context length, 77


def _reference_deep(
    backbone: Backbone, tokens: torch.Tensor, prompts: list[torch.Tensor | None]
) -> torch.Tensor:
    """An independent loop over the full 77 tokens, writing each deep prompt in place."""
    model = backbone.model
    x = model.token_embedding(tokens) + model.positional_embedding  # [N, 77, W]
    for j, block in enumerate(model.transformer.resblocks):
        if j < len(prompts) and (prompt := prompts[j]) is not None:
            x = x.clone()
            x[:, 1 : 1 + prompt.shape[-2]] = prompt
        x = block(x, attn_mask=model.attn_mask)
    x = model.ln_final(x)
    return x[torch.arange(len(tokens)), tokens.argmax(dim=-1)] @ model.text_projection


def test_deep_prompts_replace_tokens_after_sos_before_their_block(tiny_backbone: Backbone) -> None:
    width = tiny_backbone.text_width
    generator = torch.Generator().manual_seed(3)
    texts = ["a photo of a dog.", "a photo of a small red cat, a type of pet."]
    shared = torch.randn(3, width, generator=generator)  # [n, W], block 1
    per_prompt = torch.randn(2, 2, width, generator=generator)  # [N, n, W], block 0
    tokenized = tokenize(tiny_backbone, texts)
    embeddings = embed_tokens(tiny_backbone, tokenized.tokens)
    with torch.no_grad():
        plain = encode_token_embeddings(tiny_backbone, embeddings, tokenized.eot_index)
        cases: list[list[torch.Tensor | None]] = [[None, shared], [per_prompt], [per_prompt, shared]]
        for prompts in cases:
            ours = encode_token_embeddings(tiny_backbone, embeddings, tokenized.eot_index, prompts)
            reference = _reference_deep(tiny_backbone, tokenized.tokens, prompts)
            assert (ours - reference).abs().max().item() < 1e-5
            assert (ours - plain).abs().max().item() > 1e-3  # the prompts did something


def test_deep_prompts_carry_gradients_and_must_end_before_every_eot(tiny_backbone: Backbone) -> None:
    tokenized = tokenize(tiny_backbone, ["a photo of a dog.", "cat"])  # EOTs at 7 and 2
    embeddings = embed_tokens(tiny_backbone, tokenized.tokens)
    prompt = torch.zeros(1, tiny_backbone.text_width, requires_grad=True)
    features = encode_token_embeddings(tiny_backbone, embeddings, tokenized.eot_index, [None, prompt])
    features.sum().backward()
    assert prompt.grad is not None and prompt.grad.abs().sum() > 0
    too_many = torch.zeros(2, tiny_backbone.text_width)  # would overwrite the EOT of "cat"
    with pytest.raises(ValueError, match="overwrite an EOT"):
        encode_token_embeddings(tiny_backbone, embeddings, tokenized.eot_index, [too_many])


def test_an_over_long_prompt_is_an_error_never_truncated(tiny_backbone: Backbone) -> None:
    assert token_count(tiny_backbone, "cat") == 1
    fits = " ".join(["cat"] * (tiny_backbone.context_length - 2))  # + SOS + EOT = 77
    assert tokenize(tiny_backbone, [fits]).eot_index.tolist() == [76]
    with pytest.raises(TextTooLongError, match="needs 78 tokens but the text tower's context holds 77"):
        tokenize(tiny_backbone, ["a photo of a dog.", fits + " cat"])
    with pytest.raises(TextTooLongError):
        encode_texts(tiny_backbone, [fits + " cat"])


def test_encode_texts_is_normalised_and_takes_an_empty_batch(tiny_backbone: Backbone) -> None:
    features = encode_texts(tiny_backbone, PROMPTS)
    with torch.no_grad():
        reference = F.normalize(tiny_backbone.model.encode_text(tiny_backbone.tokenizer(PROMPTS)), dim=-1)
    assert (features - reference).abs().max().item() < 1e-5
    assert encode_texts(tiny_backbone, []).shape == (0, tiny_backbone.embed_dim)


def test_token_ids_and_eot_positions_go_up_through_the_non_blocking_copy(
    tiny_backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every host->device copy of the text path goes through models.transfer.to_device (pinned,
    non-blocking on CUDA): a plain `.to(device)` per chunk would wait for the GPU each time."""
    import models.text

    moved: list[tuple[torch.dtype, tuple[int, ...]]] = []

    def spy(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
        moved.append((tensor.dtype, tuple(tensor.shape)))
        return tensor.to(device)

    monkeypatch.setattr(models.text, "to_device", spy)
    encode_texts(tiny_backbone, PROMPTS)
    length = tiny_backbone.context_length
    assert moved == [(torch.long, (len(PROMPTS), length)), (torch.long, (len(PROMPTS),))]
