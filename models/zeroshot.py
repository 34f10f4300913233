"""Zero-shot class-embedding matrices: class names x templates -> [C, D], normalised.

A class's embedding is the mean of its normalised template embeddings, renormalised (CLIP's prompt
ensembling). Classes are processed in chunks so memory stays bounded by the chunk, not by the
number of classes: 20,000 classes x 80 templates would otherwise be 1.6M prompts at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from open_clip import zero_shot_metadata

from models.backbone import Backbone
from models.text import embed_tokens, encode_token_embeddings, tokenize

PLACEHOLDER = "{}"

# CoOp's per-dataset hand-written templates (trainers/zsclip.py), and open_clip's ImageNet sets.
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "photo": ("a photo of a {}.",),
    "openai_imagenet": tuple(t(PLACEHOLDER) for t in zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES),
    "simple_imagenet": tuple(t(PLACEHOLDER) for t in zero_shot_metadata.SIMPLE_IMAGENET_TEMPLATES),
    "pets": ("a photo of a {}, a type of pet.",),
    "flowers": ("a photo of a {}, a type of flower.",),
    "aircraft": ("a photo of a {}, a type of aircraft.",),
    "dtd": ("{} texture.",),
    "eurosat": ("a centered satellite photo of {}.",),
    "food": ("a photo of {}, a type of food.",),
    "ucf101": ("a photo of a person doing {}.",),
}
DEFAULT_TEMPLATES = TEMPLATE_SETS["photo"]


def resolve_templates(templates: str | Sequence[str] | None) -> tuple[str, ...]:
    """A template-set name, or explicit templates each containing one '{}'."""
    if templates is None:
        return DEFAULT_TEMPLATES
    if isinstance(templates, str):
        if templates in TEMPLATE_SETS:
            return TEMPLATE_SETS[templates]
        templates = [templates]
    resolved = tuple(templates)
    if not resolved:
        raise ValueError("at least one template is required")
    for template in resolved:
        if template.count(PLACEHOLDER) != 1:
            raise ValueError(
                f"template {template!r} must contain '{{}}' exactly once "
                f"(or name a set: {', '.join(TEMPLATE_SETS)})"
            )
    return resolved


def class_name_text(name: str) -> str:
    """Class names as CLIP reads them: folder-style underscores become spaces."""
    return name.replace("_", " ").strip()


@torch.no_grad()
def class_embedding_matrix(
    backbone: Backbone,
    classnames: Sequence[str],
    templates: str | Sequence[str] | None = None,
    prompts_per_chunk: int = 4096,
) -> torch.Tensor:
    """[C, D] normalised class embeddings, computed `prompts_per_chunk` prompts at a time."""
    resolved = resolve_templates(templates)
    classes_per_chunk = max(1, prompts_per_chunk // len(resolved))
    chunks = []
    for start in range(0, len(classnames), classes_per_chunk):
        names = [class_name_text(n) for n in classnames[start : start + classes_per_chunk]]
        prompts = [t.replace(PLACEHOLDER, name, 1) for name in names for t in resolved]
        tokenized = tokenize(backbone, prompts)
        features = encode_token_embeddings(
            backbone, embed_tokens(backbone, tokenized.tokens), tokenized.eot_index
        )  # [c * T, D]
        features = F.normalize(features, dim=-1).view(len(names), len(resolved), -1)  # [c, T, D]
        chunks.append(F.normalize(features.mean(dim=1), dim=-1))  # [c, D]
    if not chunks:
        raise ValueError("at least one class name is required")
    return torch.cat(chunks)  # [C, D]
