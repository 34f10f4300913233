"""A tiny CLIP for math tests: every weight moved away from its init, and every width different.

Built from models/configs/clipserve-tiny-vit.json with three blocks per tower (so "from block 1 to
J-1" and "every block" have a middle), distinct widths (embed 48, text 64, vision 80: a wrong axis
or a wrong layer size is a shape error, not a silent coincidence) and a 32-token context. Random
init leaves layer-norm gains at 1, biases at 0 and small positional embeddings: a missing layer
norm, bias or position could hide behind them, so seeded noise is added to every tensor.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import open_clip
import torch

from models.backbone import CONFIG_DIR, Backbone, build_backbone

ARCH = "clipserve-math-vit"


def register_arch() -> str:
    """Register the three-block variant of the tiny ViT with open_clip (idempotent)."""
    if ARCH in open_clip.list_models():
        return ARCH
    config = json.loads((CONFIG_DIR / "clipserve-tiny-vit.json").read_text())
    config["embed_dim"] = 48
    config["vision_cfg"].update(layers=3, width=80, head_width=40)
    config["text_cfg"].update(layers=3, width=64, heads=2, context_length=32)
    with tempfile.TemporaryDirectory() as folder:  # open_clip reads the file at once
        path = Path(folder) / f"{ARCH}.json"
        path.write_text(json.dumps(config))
        open_clip.add_model_config(path)
    return ARCH


def perturb(module: torch.nn.Module, seed: int, scale: float = 0.05) -> None:
    """Add seeded N(0, scale^2) noise to every parameter of `module`, in name order."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, parameter in sorted(module.named_parameters()):
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)


def perturbed_backbone(seed: int = 3) -> Backbone:
    """The math-test CLIP with perturbed weights and a logit scale of about 21 (not CLIP's 14.3)."""
    backbone = build_backbone(register_arch(), pretrained=None, seed=seed)
    perturb(backbone.model, seed)
    with torch.no_grad():
        backbone.model.logit_scale.fill_(math.log(21.0))
    return backbone
