"""The checkpoint format: exact round trip, distinct errors naming the file, atomic writes, no pickle."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import models.checkpoint as checkpoint_module
from models.backbone import BackboneIdentity
from models.checkpoint import (
    BackboneMismatchError,
    Checkpoint,
    CheckpointCorruptError,
    CheckpointError,
    CheckpointHeader,
    CheckpointNotFoundError,
    CheckpointVersionError,
    is_clipserve_checkpoint,
    load_checkpoint,
    read_header,
    save_checkpoint,
)

REPO = Path(__file__).parents[2]
IDENTITY = BackboneIdentity("clipserve-tiny-vit", "random:seed=0")
CLASSES = ["dog", "cat", "golden retriever"]


def _checkpoint(version: int = 1) -> Checkpoint:
    generator = torch.Generator().manual_seed(version)
    header = CheckpointHeader(
        kind="prompts",
        method="coop",
        backbone=IDENTITY,
        config={"n_ctx": 4, "version": version, "nested": {"lr": 0.002, "ok": True}},
        classnames=CLASSES,
        templates=["a photo of a {}."],
        preprocessing={"image_size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        logit_scale=42.5,
        provenance={"git": "abc123", "seed": 1},
        metrics={"accuracy": 0.875},
    )
    tensors = {
        "ctx": torch.randn(4, 64, generator=generator),
        "meta_net.linear.weight": torch.randn(8, 64, generator=generator).to(torch.bfloat16),
        "counts": torch.arange(6, dtype=torch.int64).reshape(2, 3),
    }
    embeddings = torch.nn.functional.normalize(torch.randn(3, 64, generator=generator), dim=-1)
    return Checkpoint(header=header, tensors=tensors, class_embeddings=embeddings)


def _data_offset(path: Path) -> int:
    """Where the tensor bytes start: after the 8-byte length and the safetensors JSON header."""
    (header_length,) = struct.unpack("<Q", path.read_bytes()[:8])
    return 8 + header_length


def _header_json(path: Path) -> dict[str, object]:
    raw = path.read_bytes()[8 : _data_offset(path)]
    return dict(json.loads(json.loads(raw)["__metadata__"]["clipserve"]))


def _rewrite_header(path: Path, data: dict[str, object]) -> None:
    """Re-save the same tensors under a hand-edited clipserve header."""
    save_file(load_file(str(path)), str(path), metadata={"clipserve": json.dumps(data)})


def test_round_trip_is_exact(tmp_path: Path) -> None:
    original = _checkpoint()
    path = save_checkpoint(tmp_path / "coop.safetensors", original)
    loaded = load_checkpoint(path, expected_backbone=IDENTITY)
    assert loaded.header == original.header == read_header(path)
    assert loaded.tensors.keys() == original.tensors.keys()
    for name, tensor in original.tensors.items():
        assert loaded.tensors[name].dtype == tensor.dtype and torch.equal(loaded.tensors[name], tensor)
    assert loaded.class_embeddings is not None and original.class_embeddings is not None
    assert torch.equal(loaded.class_embeddings, original.class_embeddings)
    assert is_clipserve_checkpoint(path)


def test_the_file_is_safetensors_and_loading_never_unpickles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_checkpoint(tmp_path / "coop.safetensors", _checkpoint())
    raw = path.read_bytes()
    assert _header_json(path)["format_version"] == 1
    assert not raw.startswith((b"PK", b"\x80"))  # neither torch's zip nor a bare pickle

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a checkpoint load must never unpickle")

    for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
        monkeypatch.setattr(module, name, refuse)
    assert load_checkpoint(path).header.method == "coop"
    assert read_header(path).method == "coop"


def _raises(kind: type[CheckpointError], path: Path, **kwargs: object) -> CheckpointError:
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path, **kwargs)  # type: ignore[arg-type]
    assert type(error.value) is kind  # the exact class, not merely a CheckpointError
    assert str(path) in str(error.value) and error.value.path == str(path)
    return error.value


def test_a_missing_file(tmp_path: Path) -> None:
    _raises(CheckpointNotFoundError, tmp_path / "absent.safetensors")


@pytest.mark.parametrize("keep", [4, 100, -1000, -1])
def test_a_truncated_file(tmp_path: Path, keep: int) -> None:
    path = save_checkpoint(tmp_path / "coop.safetensors", _checkpoint())
    raw = path.read_bytes()
    path.write_bytes(raw[:keep])
    _raises(CheckpointCorruptError, path)


def test_a_flipped_byte_in_the_tensor_data(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "coop.safetensors", _checkpoint())
    raw = bytearray(path.read_bytes())
    position = (_data_offset(path) + len(raw)) // 2
    raw[position] ^= 0x01
    path.write_bytes(bytes(raw))
    error = _raises(CheckpointCorruptError, path)
    assert "checksum" in str(error)


@pytest.mark.parametrize(
    "metadata",
    [{"clipserve": "{not json"}, {"clipserve": "[1, 2]"}, {"other": "{}"}, None],
    ids=["garbage-json", "not-an-object", "no-clipserve-header", "no-metadata"],
)
def test_a_garbage_header(tmp_path: Path, metadata: dict[str, str] | None) -> None:
    path = tmp_path / "coop.safetensors"
    save_file({"learned.ctx": torch.zeros(2, 3)}, str(path), metadata=metadata)
    _raises(CheckpointCorruptError, path)


def test_a_header_with_missing_or_mistyped_fields(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "coop.safetensors", _checkpoint())
    for field, value in (("kind", None), ("classnames", "dog"), ("kind", "optimizer")):
        data = _header_json(path)
        data[field] = value
        _rewrite_header(path, data)
        _raises(CheckpointCorruptError, path)


def test_an_unknown_format_version(tmp_path: Path) -> None:
    future = _checkpoint()
    future.header.format_version = 99
    path = save_checkpoint(tmp_path / "coop.safetensors", future)
    error = _raises(CheckpointVersionError, path)
    assert "format version 99" in str(error)
    with pytest.raises(CheckpointVersionError):
        read_header(path)


def test_a_backbone_mismatch(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "coop.safetensors", _checkpoint())
    running = BackboneIdentity("clipserve-tiny-vit", "random:seed=1")
    error = _raises(BackboneMismatchError, path, expected_backbone=running)
    assert "random:seed=0" in str(error) and "random:seed=1" in str(error)


def test_the_error_classes_are_distinct() -> None:
    kinds = [CheckpointNotFoundError, CheckpointCorruptError, CheckpointVersionError, BackboneMismatchError]
    for kind in kinds:
        assert issubclass(kind, CheckpointError)
        assert not any(issubclass(kind, other) for other in kinds if other is not kind)


def test_an_unknown_kind_is_not_written(tmp_path: Path) -> None:
    bad = _checkpoint()
    bad.header.kind = "optimizer"
    with pytest.raises(ValueError, match="kind must be one of"):
        save_checkpoint(tmp_path / "bad.safetensors", bad)
    assert list(tmp_path.iterdir()) == []


def test_temp_files_are_hidden_tmp_files_in_the_same_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[Path] = []
    real_save_file = checkpoint_module.save_file

    def recording(tensors: dict[str, torch.Tensor], filename: str, metadata: dict[str, str]) -> None:
        written.append(Path(filename))
        real_save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint_module, "save_file", recording)
    save_checkpoint(tmp_path / "coop.safetensors", _checkpoint())
    (temp,) = written
    assert temp.parent == tmp_path and re.fullmatch(r"\.coop\.safetensors\.[\w-]+\.tmp", temp.name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coop.safetensors"]


def test_a_failed_write_keeps_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_checkpoint(tmp_path / "coop.safetensors", _checkpoint(version=1))

    def failing(tensors: dict[str, torch.Tensor], filename: str, metadata: dict[str, str]) -> None:
        Path(filename).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module, "save_file", failing)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _checkpoint(version=2))
    assert load_checkpoint(path).header.config["version"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coop.safetensors"]


WRITER = """
import sys, torch
from models.backbone import BackboneIdentity
from models.checkpoint import Checkpoint, CheckpointHeader, save_checkpoint

identity = BackboneIdentity("clipserve-tiny-vit", "random:seed=0")
for version in range(1, 10_000):
    header = CheckpointHeader(kind="backbone", method="none", backbone=identity, config={"version": version})
    tensors = {"weights": torch.full((16_000_000,), float(version))}  # 64 MB per write
    print("saving", version, flush=True)
    save_checkpoint(sys.argv[1], Checkpoint(header=header, tensors=tensors))
    print("saved", version, flush=True)
"""


@pytest.mark.timeout(180)
def test_sigkill_mid_write_leaves_a_complete_old_or_new_file(tmp_path: Path) -> None:
    path = tmp_path / "backbone.safetensors"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        while (line := writer.stdout.readline()) and line.strip() != "saved 1":
            pass
        assert line.strip() == "saved 1", "the writer died before finishing its first checkpoint"
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.0002)  # wait until the next write is under way ...
        writer.send_signal(signal.SIGKILL)  # ... and kill it part-way
        writer.wait(timeout=30)
    finally:
        writer.kill()
    assert writer.returncode == -signal.SIGKILL
    leftovers = list(tmp_path.glob(".*.tmp"))
    assert leftovers, "the kill did not land during a write"
    survivor = load_checkpoint(path)  # verified against its checksum: complete, not half of one
    version = survivor.header.config["version"]
    assert version >= 1
    assert torch.equal(survivor.tensors["weights"], torch.full((16_000_000,), float(version)))
