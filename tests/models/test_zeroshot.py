"""Zero-shot class matrices: template sets, prompt ensembling, chunking, class-name cleaning."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
import torch.nn.functional as F

import models.zeroshot as zeroshot
from models.backbone import Backbone
from models.zeroshot import (
    DEFAULT_TEMPLATES,
    TEMPLATE_SETS,
    class_embedding_matrix,
    class_name_text,
    resolve_templates,
)

CLASSES = ["dog", "golden_retriever", "cat", "red panda", "tabby_cat", "aircraft carrier", "x"]


def _open_clip_features(backbone: Backbone, prompts: Sequence[str]) -> torch.Tensor:
    """[N, D] normalised, straight from open_clip's encode_text (independent of our text path)."""
    with torch.no_grad():
        return backbone.model.encode_text(backbone.tokenizer(list(prompts)), normalize=True)


@pytest.mark.parametrize("name", sorted(TEMPLATE_SETS))
def test_named_template_sets_resolve(name: str) -> None:
    templates = resolve_templates(name)
    assert templates == TEMPLATE_SETS[name] and templates
    assert all(t.count("{}") == 1 for t in templates)


def test_standard_sets_and_defaults() -> None:
    assert len(resolve_templates("openai_imagenet")) == 80
    assert resolve_templates(None) == DEFAULT_TEMPLATES == ("a photo of a {}.",)
    assert resolve_templates("itap of a {}.") == ("itap of a {}.",)
    assert resolve_templates(["a {}.", "the {}."]) == ("a {}.", "the {}.")


@pytest.mark.parametrize("bad", ["openai_imagnet", "a photo", "a {} of a {}", [], ["a {}.", "no slot"]])
def test_bad_templates_are_rejected(bad: str | list[str]) -> None:
    with pytest.raises(ValueError, match="template"):
        resolve_templates(bad)


def test_single_template_equals_normalised_encode_text(tiny_backbone: Backbone) -> None:
    matrix = class_embedding_matrix(tiny_backbone, CLASSES, "a photo of a {}.")
    expected = _open_clip_features(tiny_backbone, [f"a photo of a {class_name_text(c)}." for c in CLASSES])
    assert matrix.shape == (len(CLASSES), tiny_backbone.embed_dim)
    assert (matrix - expected).abs().max().item() < 1e-5


def test_several_templates_give_the_renormalised_mean(tiny_backbone: Backbone) -> None:
    templates = ["a photo of a {}.", "a drawing of the {}.", "{}"]
    matrix = class_embedding_matrix(tiny_backbone, CLASSES, templates)
    for row, name in zip(matrix, CLASSES, strict=True):
        per_template = _open_clip_features(
            tiny_backbone, [t.format(class_name_text(name)) for t in templates]
        )
        expected = F.normalize(per_template.mean(dim=0), dim=-1)  # [D]
        assert (row - expected).abs().max().item() < 1e-5
    assert torch.allclose(matrix.norm(dim=-1), torch.ones(len(CLASSES)), atol=1e-5)


def test_chunked_equals_unchunked(tiny_backbone: Backbone) -> None:
    whole = class_embedding_matrix(tiny_backbone, CLASSES, ["a photo of a {}.", "a {}."])
    for prompts_per_chunk in (1, 2, 3, 5):
        chunked = class_embedding_matrix(
            tiny_backbone, CLASSES, ["a photo of a {}.", "a {}."], prompts_per_chunk
        )
        assert (chunked - whole).abs().max().item() < 1e-5


def test_twenty_thousand_classes_in_bounded_chunks(
    tiny_backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows: list[int] = []
    text_path = zeroshot.encode_token_embeddings

    def spy(backbone: Backbone, embeddings: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        rows.append(embeddings.shape[0])
        return text_path(backbone, embeddings, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(zeroshot, "encode_token_embeddings", spy)
    classes = [f"class {i} name" for i in range(20_000)]
    matrix = class_embedding_matrix(tiny_backbone, classes, "a photo of a {}.", prompts_per_chunk=1024)
    assert matrix.shape == (20_000, tiny_backbone.embed_dim)
    assert torch.allclose(matrix.norm(dim=-1), torch.ones(20_000), atol=1e-5)
    assert max(rows) <= 1024 and sum(rows) == 20_000 and len(rows) == 20  # never all 20,000 at once


def test_underscores_become_spaces(tiny_backbone: Backbone) -> None:
    assert class_name_text("golden_retriever ") == "golden retriever"
    underscored = class_embedding_matrix(tiny_backbone, ["golden_retriever", "tabby_cat"])
    spaced = class_embedding_matrix(tiny_backbone, ["golden retriever", "tabby cat"])
    assert torch.equal(underscored, spaced)


def test_no_classes_is_an_error(tiny_backbone: Backbone) -> None:
    with pytest.raises(ValueError, match="class name"):
        class_embedding_matrix(tiny_backbone, [])
