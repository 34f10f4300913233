"""build_backbone: frozen eval models, precisions, and every way of naming weights (and failing to)."""

from __future__ import annotations

import hashlib
import json
import math
import socket
import time
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from models.backbone import TINY_ARCHS, Backbone, BackboneError, BackboneIdentity, build_backbone
from models.checkpoint import Checkpoint, CheckpointHeader, save_checkpoint
from models.text import encode_texts
from tests.conftest import TINY_ARCH, TINY_SEED

PROMPTS = ["a photo of a dog.", "a photo of a golden retriever, a type of pet."]


def _outputs(backbone: Backbone) -> tuple[torch.Tensor, torch.Tensor]:
    size = backbone.preprocessing.image_size
    pixels = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(7))
    return backbone.encode_images(pixels), encode_texts(backbone, PROMPTS)


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_tiny_models_are_frozen_small_and_in_eval_mode(arch: str) -> None:
    backbone = build_backbone(arch, None)
    params = list(backbone.model.parameters())
    assert 100_000 < sum(p.numel() for p in params) < 5_000_000
    assert not any(p.requires_grad for p in params)
    assert not any(module.training for module in backbone.model.modules())
    assert backbone.identity == BackboneIdentity(arch, "random:seed=0")
    images, texts = _outputs(backbone)
    assert images.shape == (3, backbone.embed_dim) and texts.shape == (2, backbone.embed_dim)
    assert torch.allclose(images.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_random_weights_are_seeded_and_leave_the_callers_rng_alone(tiny_backbone: Backbone) -> None:
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    again = build_backbone(TINY_ARCH, None, seed=TINY_SEED)
    assert torch.equal(torch.rand(3), expected)
    for (name, a), (_, b) in zip(
        tiny_backbone.model.state_dict().items(), again.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    other = build_backbone(TINY_ARCH, None, seed=TINY_SEED + 1)
    assert not torch.equal(other.model.text_projection, tiny_backbone.model.text_projection)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precisions_build_and_keep_layernorm_in_fp32(precision: str, tiny_backbone: Backbone) -> None:
    backbone = build_backbone(TINY_ARCH, None, precision=precision)
    expected = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    assert backbone.cast_dtype == expected and backbone.precision == precision
    assert backbone.model.transformer.resblocks[0].mlp.c_fc.weight.dtype == expected
    norms = [m for m in backbone.model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.weight.dtype == torch.float32 for m in norms)
    images, texts = _outputs(backbone)
    reference_images, reference_texts = _outputs(tiny_backbone)
    assert images.dtype == texts.dtype == torch.float32
    tolerance = 0.0 if precision == "fp32" else 0.05  # bf16 keeps ~3 significant digits
    assert (images - reference_images).abs().max() <= tolerance
    assert (texts - reference_texts).abs().max() <= tolerance


def test_unknown_precision_and_architecture_are_clear_errors() -> None:
    with pytest.raises(BackboneError, match="precision must be one of"):
        build_backbone(TINY_ARCH, None, precision="fp8")
    with pytest.raises(BackboneError, match=r"unknown architecture 'ViT-Q-99'.*clipserve-tiny-vit"):
        build_backbone("ViT-Q-99", None)


def test_missing_weights_file_names_the_path_and_what_to_pass(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ViT-B-32.safetensors"
    with pytest.raises(BackboneError) as error:
        build_backbone(TINY_ARCH, str(missing))
    assert str(missing) in str(error.value)
    assert "Pass the path of a local weights file" in str(error.value)


def test_unknown_tag_lists_the_known_tags() -> None:
    with pytest.raises(
        BackboneError, match=r"neither an existing file nor a pretrained tag.*laion2b_s34b_b79k"
    ):
        build_backbone("ViT-B-32", "laion9000_typo")


def test_known_tag_with_the_hub_offline_fails_fast_without_network(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from huggingface_hub import constants

    connections: list[object] = []

    def no_network(*args: object, **kwargs: object) -> None:
        connections.append(args)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # nothing cached, whatever this machine holds
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    was_offline = constants.HF_HUB_OFFLINE
    started = time.monotonic()
    with pytest.raises(BackboneError) as error:
        build_backbone("ViT-B-32", "laion2b_s34b_b79k")
    assert time.monotonic() - started < 10
    assert connections == []
    message = str(error.value)
    assert "HF_HUB_OFFLINE" in message and "pass its local path as pretrained" in message
    assert was_offline == constants.HF_HUB_OFFLINE  # the client's own flag is restored


def test_open_clip_safetensors_file_loads_identically(tmp_path: Path, tiny_backbone: Backbone) -> None:
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_backbone.model.state_dict().items()}, str(path))
    loaded = build_backbone(TINY_ARCH, str(path), seed=99)  # the seed must not matter
    assert loaded.identity == BackboneIdentity(TINY_ARCH, _sha256(path))
    for ours, theirs in zip(_outputs(loaded), _outputs(tiny_backbone), strict=True):
        assert torch.equal(ours, theirs)


def _save_backbone_checkpoint(path: Path, backbone: Backbone, kind: str = "backbone") -> Path:
    header = CheckpointHeader(kind=kind, method="none", backbone=backbone.identity)
    return save_checkpoint(path, Checkpoint(header=header, tensors=backbone.model.state_dict()))


def test_clipserve_backbone_checkpoint_loads_identically(tmp_path: Path, tiny_backbone: Backbone) -> None:
    path = _save_backbone_checkpoint(tmp_path / "backbone.safetensors", tiny_backbone)
    loaded = build_backbone(TINY_ARCH, str(path), seed=99)
    assert loaded.identity == BackboneIdentity(TINY_ARCH, _sha256(path))
    for ours, theirs in zip(_outputs(loaded), _outputs(tiny_backbone), strict=True):
        assert torch.equal(ours, theirs)


def test_a_prompt_checkpoint_is_not_backbone_weights(tmp_path: Path, tiny_backbone: Backbone) -> None:
    path = _save_backbone_checkpoint(tmp_path / "prompts.safetensors", tiny_backbone, kind="prompts")
    with pytest.raises(BackboneError, match="'prompts' checkpoint, not a backbone"):
        build_backbone(TINY_ARCH, str(path))


def test_weights_for_another_architecture_are_refused(tmp_path: Path, tiny_backbone: Backbone) -> None:
    plain = tmp_path / "tiny-vit.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_backbone.model.state_dict().items()}, str(plain))
    with pytest.raises(BackboneError, match="weights do not fit architecture 'clipserve-tiny-rn'") as error:
        build_backbone("clipserve-tiny-rn", str(plain))
    assert str(plain) in str(error.value)
    ours = _save_backbone_checkpoint(tmp_path / "backbone.safetensors", tiny_backbone)
    with pytest.raises(BackboneError, match="holds a 'clipserve-tiny-vit' backbone, not 'clipserve-tiny-rn'"):
        build_backbone("clipserve-tiny-rn", str(ours))


def test_a_file_that_is_not_weights_is_a_backbone_error(tmp_path: Path) -> None:
    garbage = tmp_path / "weights.bin"
    garbage.write_bytes(b"not a state dict" * 64)
    with pytest.raises(BackboneError, match="weights do not fit"):
        build_backbone(TINY_ARCH, str(garbage))


@pytest.mark.parametrize("change", [{"custom_text": True}, {"text_cfg": {"no_causal_mask": True}}])
def test_text_towers_the_one_text_path_cannot_serve_are_refused(tmp_path: Path, change: dict) -> None:
    tiny = json.loads((Path(__file__).parents[2] / "models" / "configs" / f"{TINY_ARCH}.json").read_text())
    config = {**tiny, **{k: v for k, v in change.items() if k != "text_cfg"}}
    config["text_cfg"] = {**tiny["text_cfg"], **change.get("text_cfg", {})}
    name = f"clipserve-test-{'-'.join(sorted(change))}"
    (tmp_path / f"{name}.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path)
    with pytest.raises(BackboneError, match="standard causal text tower"):
        build_backbone(name, None)


def test_logit_scale_is_read_from_the_device_once_per_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prompt learners scale logits with it on every training step and conditioned batch; each
    `.item()` on CUDA waits for the GPU, so it is read again only when the parameter changes."""
    backbone = build_backbone(TINY_ARCH, None, seed=TINY_SEED)  # its own: the test changes it
    reads = 0
    item = torch.Tensor.item

    def counting_item(tensor: torch.Tensor) -> object:
        nonlocal reads
        reads += 1
        return item(tensor)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    expected = float(backbone.model.logit_scale.detach().exp())
    assert [backbone.logit_scale for _ in range(3)] == [pytest.approx(expected)] * 3
    assert reads == 0  # read once already, when the backbone was built
    with torch.no_grad():
        backbone.model.logit_scale.fill_(math.log(50.0))  # what an optimiser step or clamp_ does
    assert backbone.logit_scale == pytest.approx(50.0) and backbone.logit_scale == pytest.approx(50.0)
    assert reads == 1
    state = {**backbone.model.state_dict(), "logit_scale": torch.tensor(math.log(20.0))}
    backbone.model.load_state_dict(state)
    assert backbone.logit_scale == pytest.approx(20.0) and reads == 2
