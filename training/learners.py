"""Building prompt learners by method name from METHODS, and loading them back from checkpoints
with the backbone they were trained on. Nothing here knows any particular method."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from models.backbone import Backbone, BackboneIdentity, build_backbone
from models.checkpoint import load_checkpoint, read_header
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


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """["n_ctx=4", "ctx_init=a photo of a", "class_specific=true"] -> typed values (JSON where it
    parses: numbers, true/false, null; text otherwise)."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw
    return values


def backbone_for(
    identity: BackboneIdentity,
    pretrained: str | None = None,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
) -> Backbone:
    """Rebuild the backbone a checkpoint names: an open_clip tag, random weights with their seed,
    or (for weights identified by sha256) the local file passed as `pretrained`."""
    kind, _, value = identity.weights.partition(":")
    if pretrained is not None:
        source: str | None = pretrained
        seed = 0
    elif kind == "tag":
        source, seed = value, 0
    elif kind == "random":
        source, seed = None, int(value.partition("=")[2] or 0)
    else:
        raise ValueError(
            f"the checkpoint's backbone is a local weights file ({identity.weights}); pass its path "
            f"with --pretrained"
        )
    backbone = build_backbone(identity.arch, source, precision=precision, device=device, seed=seed)
    if backbone.identity != identity:
        raise ValueError(f"--pretrained gives backbone {backbone.identity.weights}, not {identity.weights}")
    return backbone


def load_learner(
    path: str | Path, backbone: Backbone | None = None, pretrained: str | None = None, device: str = "cpu"
) -> PromptLearner:
    """A trained learner from its checkpoint, on `backbone` (built from the header if None)."""
    header = read_header(path)
    if backbone is None:
        backbone = backbone_for(header.backbone, pretrained, device=device)
    checkpoint = load_checkpoint(path, expected_backbone=backbone.identity, device=backbone.device)
    return method_class(header.method).from_checkpoint(backbone, checkpoint)
