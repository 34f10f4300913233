"""Building prompt learners by method name from METHODS, and loading them back from checkpoints
with the backbone they were trained on. Nothing here knows any particular method."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from models.backbone import Backbone, BackboneIdentity, build_backbone
from models.checkpoint import CheckpointHeader, load_checkpoint, read_header
from models.prompts import METHODS, LearnerConfig, PromptLearner


def method_class(method: str) -> type[PromptLearner]:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[method]


def learner_config(method: str, overrides: dict[str, Any]) -> LearnerConfig:
    """The method's config dataclass with `overrides` (field -> value) applied."""
    config_class = method_class(method).config_class
    known = {f.name for f in fields(config_class)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"{method} has no config fields {unknown}; its fields: {sorted(known)}")
    return config_class(**overrides)


def weights_file(pretrained: str | None) -> str | None:
    """The absolute path of a local weights file given as `pretrained` (None for tags and random
    weights): recorded in checkpoints so `eval` and `export` find the weights again."""
    if pretrained is None or not Path(pretrained).is_file():
        return None
    return str(Path(pretrained).resolve())


def backbone_for(
    identity: BackboneIdentity,
    pretrained: str | None = None,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    recorded_file: str | None = None,
) -> Backbone:
    """Rebuild the backbone a checkpoint names: an open_clip tag, random weights with their seed,
    or weights identified by sha256: the file passed as `pretrained`, else the file the checkpoint
    was trained from (`recorded_file`) if it is still there. Other weights are refused."""
    kind, _, value = identity.weights.partition(":")
    source: str | None
    seed = 0
    if pretrained is not None:
        source = pretrained
    elif kind == "tag":
        source = value
    elif kind == "random":
        source, seed = None, int(value.partition("=")[2] or 0)
    elif recorded_file is not None and Path(recorded_file).is_file():
        source = recorded_file
    else:
        where = f"from {recorded_file}, which is not there any more" if recorded_file else "from a local file"
        raise ValueError(
            f"the checkpoint's backbone is {identity.arch} with the weights file of {identity.weights} "
            f"(trained {where}); pass that file with --pretrained"
        )
    backbone = build_backbone(identity.arch, source, precision=precision, device=device, seed=seed)
    if backbone.identity != identity:
        raise ValueError(
            f"{source or 'random weights'} gives backbone {backbone.identity.arch} "
            f"{backbone.identity.weights}, but the checkpoint was trained on {identity.arch} "
            f"{identity.weights}; pass the weights it was trained with (--pretrained)"
        )
    return backbone


def trained_weights_file(header: CheckpointHeader) -> str | None:
    """The weights file a prompt checkpoint was trained from, as its provenance records it."""
    value = header.provenance.get("backbone_file")
    return str(value) if value else None


def load_learner(
    path: str | Path, backbone: Backbone | None = None, pretrained: str | None = None, device: str = "cpu"
) -> PromptLearner:
    """A trained learner from its checkpoint, on `backbone` (built from the header if None)."""
    header = read_header(path)
    if backbone is None:
        backbone = backbone_for(
            header.backbone, pretrained, device=device, recorded_file=trained_weights_file(header)
        )
    checkpoint = load_checkpoint(path, expected_backbone=backbone.identity, device=backbone.device)
    return method_class(header.method).from_checkpoint(backbone, checkpoint)
