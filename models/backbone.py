"""Build or load a frozen open_clip CLIP: the backbone every prompt learner and the service share.

`pretrained` is an open_clip tag ("openai", "laion2b_s34b_b79k", ...), a local weights file (an
open_clip/OpenAI state dict, or a clipserve `backbone` checkpoint), or None for random weights.
Random weights are only ever used when asked for by passing None: a tag that cannot be downloaded
or a file that is missing is an error, never a silent fallback.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch

from models.text_clean import with_fast_clean

CONFIG_DIR = Path(__file__).parent / "configs"
TINY_ARCHS = ("clipserve-tiny-vit", "clipserve-tiny-rn")
PRECISIONS = ("fp32", "bf16", "fp16")
RANDOM_WEIGHTS = "random"

# Registering at import makes the tiny architectures usable by name wherever models/ is imported.
open_clip.add_model_config(CONFIG_DIR)


class BackboneError(RuntimeError):
    """The backbone cannot be built as asked; the message says what to pass instead."""


@dataclass(frozen=True)
class BackboneIdentity:
    """What a checkpoint must match to be used with a backbone: architecture and exact weights."""

    arch: str
    weights: str  # "tag:<open_clip tag>" | "sha256:<hex of the weights file>" | "random:seed=<n>"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackboneIdentity:
        return cls(arch=str(data["arch"]), weights=str(data["weights"]))


@dataclass(frozen=True)
class Preprocessing:
    """How raw images become model input; stored in checkpoints so serving matches training."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Backbone:
    """A frozen CLIP in eval mode plus what callers need to know about it."""

    model: open_clip.model.CLIP
    tokenizer: open_clip.tokenizer.SimpleTokenizer
    identity: BackboneIdentity
    preprocessing: Preprocessing
    precision: str
    device: torch.device
    # exp(logit_scale) and the (storage, version) of the parameter it was read from: see logit_scale
    _scale_read: tuple[tuple[int, int], float] | None = field(default=None, init=False, repr=False)

    @property
    def embed_dim(self) -> int:
        return int(self.model.visual.output_dim)

    @property
    def text_width(self) -> int:
        return int(self.model.ln_final.weight.shape[0])

    @property
    def context_length(self) -> int:
        return int(self.model.positional_embedding.shape[0])

    @property
    def logit_scale(self) -> float:
        """exp(logit_scale), CLIP's inverse temperature, as a Python float.

        Reading a CUDA tensor into a float waits for every kernel queued before it, and prompt
        learners scale logits on every training step and every image-conditioned batch. So it is read
        once per value of the parameter: the key is its storage and its version counter, which every
        in-place change (load_state_dict, an optimiser step, clamp_) bumps and `.to()` replaces.
        """
        parameter = self.model.logit_scale
        key = (parameter.data_ptr(), parameter._version)
        if self._scale_read is None or self._scale_read[0] != key:
            self._scale_read = (key, float(parameter.detach().exp().item()))
        return self._scale_read[1]

    @property
    def cast_dtype(self) -> torch.dtype:
        return self.model.transformer.get_cast_dtype()

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] preprocessed pixels -> [B, D] normalised image features (fp32)."""
        pixels = pixels.to(self.device, self.cast_dtype)
        features = self.model.encode_image(pixels)
        return torch.nn.functional.normalize(features.float(), dim=-1)


def build_backbone(
    arch: str,
    pretrained: str | None,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> Backbone:
    """Build a frozen CLIP. `pretrained=None` means random weights (seeded) and must be explicit."""
    if precision not in PRECISIONS:
        raise BackboneError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if arch not in open_clip.list_models():
        raise BackboneError(
            f"unknown architecture {arch!r}; open_clip knows e.g. ViT-B-32, ViT-B-16, ViT-L-14, "
            f"RN50, and the tiny test models {', '.join(TINY_ARCHS)}"
        )
    # open_clip casts linear/conv/attention weights to bf16/fp16 and keeps LayerNorms in fp32.
    create = {"precision": precision, "device": device}
    # Weights are initialised on the CPU; seed them without touching the caller's RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, identity = _create_model(arch, pretrained, seed, create)
    _check_text_tower(arch, model)
    model.eval().requires_grad_(False)
    backbone = Backbone(
        model=model,
        tokenizer=_tokenizer(arch),
        identity=identity,
        preprocessing=_preprocessing(model),
        precision=precision,
        device=torch.device(device),
    )
    backbone.logit_scale  # noqa: B018 (read now, at build time, so no hot path pays the device read)
    return backbone


def _create_model(
    arch: str, pretrained: str | None, seed: int, create: dict[str, Any]
) -> tuple[Any, BackboneIdentity]:
    if pretrained is None or pretrained == RANDOM_WEIGHTS:
        model = open_clip.create_model(arch, pretrained=None, **create)
        return model, BackboneIdentity(arch, f"random:seed={seed}")
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if pretrained in tags:
        return _create_from_tag(arch, pretrained, create)
    path = Path(pretrained)
    if not path.is_file():
        raise BackboneError(
            f"weights not found: {pretrained!r} is neither an existing file nor a pretrained tag "
            f"of {arch!r} (known tags: {', '.join(tags) or 'none'}). Pass the path of a local "
            f"weights file (an open_clip .bin/.pt/.safetensors state dict, or a clipserve "
            f"backbone checkpoint)."
        )
    return _create_from_file(arch, path, create)


def _create_from_file(arch: str, path: Path, create: dict[str, Any]) -> tuple[Any, BackboneIdentity]:
    with _weights_follow():  # the file's weights are loaded next; open_clip's warning would be false
        model = open_clip.create_model(arch, pretrained=None, **create)
    state = _backbone_checkpoint_state(arch, path)
    try:
        if state is not None:
            model.load_state_dict(state, strict=True)
        else:
            open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
    except Exception as error:  # size/key mismatch, not a weights file, unsafe pickle: all unusable
        raise BackboneError(f"{path}: weights do not fit architecture {arch!r}: {error}") from error
    return model, BackboneIdentity(arch, f"sha256:{file_sha256(path)}")


RANDOM_INIT_WARNING = "No pretrained weights loaded for model"


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(RANDOM_INIT_WARNING)


@contextlib.contextmanager
def _weights_follow() -> Iterator[None]:
    """Drop open_clip's "No pretrained weights loaded ... initialized randomly" (a root-logger
    warning) for one create_model call whose weights are loaded right after it; every other
    record, and that warning outside this call, passes."""
    root, drop = logging.getLogger(), _DropRandomInitWarning()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _backbone_checkpoint_state(arch: str, path: Path) -> dict[str, torch.Tensor] | None:
    """The weights of a clipserve `backbone` checkpoint, or None for plain open_clip files."""
    # Imported here because the checkpoint module itself imports BackboneIdentity from this one.
    from models.checkpoint import CheckpointError, is_clipserve_checkpoint, load_checkpoint

    if path.suffix != ".safetensors" or not is_clipserve_checkpoint(path):
        return None
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as error:
        raise BackboneError(str(error)) from error
    if checkpoint.header.kind != "backbone":
        raise BackboneError(
            f"{path} is a clipserve {checkpoint.header.kind!r} checkpoint, not a "
            f"backbone; pass backbone weights as pretrained"
        )
    if checkpoint.header.backbone.arch != arch:
        raise BackboneError(f"{path} holds a {checkpoint.header.backbone.arch!r} backbone, not {arch!r}")
    return checkpoint.tensors


def _create_from_tag(arch: str, tag: str, create: dict[str, Any]) -> tuple[Any, BackboneIdentity]:
    offline = hub_offline()
    try:
        with _hub_client_offline(offline):
            model = open_clip.create_model(arch, pretrained=tag, require_pretrained=True, **create)
    except Exception as error:  # the hub client raises many types; all mean "could not fetch"
        reason = "HF_HUB_OFFLINE is set and they are not in the local cache" if offline else "download failed"
        raise BackboneError(
            f"could not fetch pretrained weights {arch!r}/{tag!r} ({reason}; {type(error).__name__}); "
            f"without network access, download the weights file elsewhere and pass its local "
            f"path as pretrained (e.g. --pretrained /models/{arch}-{tag}.safetensors)"
        ) from error
    return model, BackboneIdentity(arch, f"tag:{tag}")


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set in the environment right now."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


@contextlib.contextmanager
def _hub_client_offline(offline: bool) -> Iterator[None]:
    """huggingface_hub reads HF_HUB_OFFLINE once, at import; apply the current value for one call.

    Offline, the hub client answers from its cache or fails at once, instead of retrying for
    most of a minute per file. huggingface_hub is open_clip's own download client.
    """
    if not offline:
        yield
        return
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def _check_text_tower(arch: str, model: Any) -> None:
    """The one text path needs CLIP's causal text transformer pooled at the EOT token."""
    causal = getattr(model, "attn_mask", None) is not None
    if not isinstance(model, open_clip.model.CLIP) or not causal or model.text_pool_type != "argmax":
        raise BackboneError(
            f"{arch!r} does not have CLIP's standard causal text tower pooled at the EOT token; "
            f"clipserve supports that text tower only"
        )


def _tokenizer(arch: str) -> open_clip.tokenizer.SimpleTokenizer:
    tokenizer = open_clip.get_tokenizer(arch)
    if not isinstance(tokenizer, open_clip.tokenizer.SimpleTokenizer):
        raise BackboneError(
            f"{arch!r} uses {type(tokenizer).__name__}; clipserve supports "
            f"CLIP's standard BPE text tower only"
        )
    return with_fast_clean(tokenizer)  # same tokens; plain labels skip ftfy


def _preprocessing(model: Any) -> Preprocessing:
    cfg = model.visual.preprocess_cfg
    size = model.visual.image_size
    return Preprocessing(
        image_size=int(size[0] if isinstance(size, tuple | list) else size),
        mean=tuple(float(v) for v in cfg["mean"]),  # type: ignore[arg-type]
        std=tuple(float(v) for v in cfg["std"]),  # type: ignore[arg-type]
        interpolation=str(cfg.get("interpolation", "bicubic")),
        resize_mode=str(cfg.get("resize_mode", "shortest")),
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
