"""THE checkpoint format, written by training export and read by the service.

One .safetensors file holding
- `learned.<name>`: the learned tensors (a prompt learner's state dict, or a whole backbone),
- `class_embeddings`: [C, D] precomputed normalised class embeddings (prompt checkpoints),
- header metadata `clipserve`: one JSON string (format version, kind, method and its config,
  backbone identity, class names, templates, preprocessing, logit scale, provenance, metrics,
  and a SHA-256 over the tensors so corruption inside the data section is caught too).

Writes are atomic (temp file in the same folder, fsync, rename), so a reader or a directory
watcher sees the old file or the new one, never half of one. Temp files are dot-files ending in
`.tmp`, which the service's watcher ignores. Loading is strict and never unpickles anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from models.backbone import BackboneIdentity

FORMAT_VERSION = 1
KINDS = ("prompts", "backbone")
METADATA_KEY = "clipserve"
LEARNED_PREFIX = "learned."
CLASS_EMBEDDINGS_KEY = "class_embeddings"
TEMP_SUFFIX = ".tmp"


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class CheckpointNotFoundError(CheckpointError):
    pass


class CheckpointCorruptError(CheckpointError):
    """Truncated, not safetensors, malformed header, or tensors that fail their checksum."""


class CheckpointVersionError(CheckpointError):
    """Written by a format version this code does not read."""


class BackboneMismatchError(CheckpointError):
    """Trained on a different backbone (architecture or weights) than the one running."""


@dataclass
class CheckpointHeader:
    kind: str
    method: str
    backbone: BackboneIdentity
    config: dict[str, Any] = field(default_factory=dict)
    classnames: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    logit_scale: float = 100.0
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self, tensors_sha256: str) -> str:
        data = asdict(self)
        data["backbone"] = self.backbone.to_dict()
        data["tensors_sha256"] = tensors_sha256
        return json.dumps(data, sort_keys=True)


@dataclass
class Checkpoint:
    header: CheckpointHeader
    tensors: dict[str, torch.Tensor]
    class_embeddings: torch.Tensor | None = None


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    """Write atomically; an existing file at `path` stays intact until the new one is complete."""
    path = Path(path)
    header = checkpoint.header
    if header.kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {header.kind!r}")
    tensors = {LEARNED_PREFIX + k: v.detach().cpu().contiguous() for k, v in checkpoint.tensors.items()}
    if checkpoint.class_embeddings is not None:
        tensors[CLASS_EMBEDDINGS_KEY] = checkpoint.class_embeddings.detach().cpu().contiguous()
    metadata = {METADATA_KEY: header.to_json(tensors_sha256(tensors))}
    # Unique per writer (process and thread), so concurrent saves never share a temp file.
    temp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}{TEMP_SUFFIX}")
    try:
        save_file(tensors, str(temp), metadata=metadata)
        # Readable by a service running as another user (the temp file may be created 0600).
        os.chmod(temp, 0o644)
        _fsync(temp)
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    _fsync(path.parent)
    return path


def load_checkpoint(
    path: str | Path,
    expected_backbone: BackboneIdentity | None = None,
    device: str | torch.device = "cpu",
) -> Checkpoint:
    """Load and verify; raises a CheckpointError subclass naming the file on any problem."""
    path = Path(path)
    header, tensors = _read(path)  # the format version is checked before any tensor is read
    if expected_backbone is not None and header.backbone != expected_backbone:
        raise BackboneMismatchError(
            path,
            f"trained on backbone {header.backbone.arch} ({header.backbone.weights}) but the "
            f"running backbone is {expected_backbone.arch} ({expected_backbone.weights})",
        )
    learned = {k[len(LEARNED_PREFIX) :]: v for k, v in tensors.items() if k.startswith(LEARNED_PREFIX)}
    unknown = set(tensors) - {LEARNED_PREFIX + k for k in learned} - {CLASS_EMBEDDINGS_KEY}
    if unknown:
        raise CheckpointCorruptError(path, f"unexpected tensors {sorted(unknown)}")
    embeddings = tensors.get(CLASS_EMBEDDINGS_KEY)
    if embeddings is not None and (embeddings.dim() != 2 or len(embeddings) != len(header.classnames)):
        raise CheckpointCorruptError(
            path, f"class_embeddings {tuple(embeddings.shape)} do not match {len(header.classnames)} classes"
        )
    learned = {k: v.to(device) for k, v in learned.items()}
    embeddings = None if embeddings is None else embeddings.to(device)
    return Checkpoint(header=header, tensors=learned, class_embeddings=embeddings)


def read_header(path: str | Path) -> CheckpointHeader:
    """The header alone (no tensor data read), for listings and compatibility checks."""
    path = Path(path)
    with _open(path) as handle:
        return _parse_header(path, _header_json(path, handle.metadata()))


def is_clipserve_checkpoint(path: str | Path) -> bool:
    """Whether `path` is a safetensors file carrying a clipserve header."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return METADATA_KEY in (handle.metadata() or {})
    except Exception:  # not safetensors, unreadable: not ours
        return False


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """A digest over names, dtypes, shapes and bytes, independent of file layout."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _read(path: Path) -> tuple[CheckpointHeader, dict[str, torch.Tensor]]:
    """Header (version checked first), then the tensors on the CPU, verified against their checksum."""
    with _open(path) as handle:
        data = _header_json(path, handle.metadata())
        header = _parse_header(path, data)
        try:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
        except Exception as error:  # safetensors raises its own error type for bad offsets
            raise CheckpointCorruptError(path, f"unreadable tensor data ({error})") from error
    if tensors_sha256(tensors) != data.get("tensors_sha256"):
        raise CheckpointCorruptError(path, "tensor data does not match its checksum (corrupted)")
    return header, tensors


@contextlib.contextmanager
def _open(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointNotFoundError(path, "no such checkpoint file")
    try:
        handle = safe_open(str(path), framework="pt")
    except Exception as error:  # SafetensorError: truncated, or not safetensors at all
        raise CheckpointCorruptError(path, f"not a readable safetensors file ({error})") from error
    with handle:
        yield handle


def _header_json(path: Path, metadata: dict[str, str] | None) -> dict[str, Any]:
    if not metadata or METADATA_KEY not in metadata:
        raise CheckpointCorruptError(path, "safetensors file without a clipserve header")
    try:
        data = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as error:
        raise CheckpointCorruptError(path, f"clipserve header is not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise CheckpointCorruptError(path, "clipserve header is not a JSON object")
    return data


def _parse_header(path: Path, data: dict[str, Any]) -> CheckpointHeader:
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointVersionError(
            path, f"format version {version!r} is not supported (this clipserve reads {FORMAT_VERSION})"
        )
    try:
        header = CheckpointHeader(
            kind=_typed(data, "kind", str),
            method=_typed(data, "method", str),
            backbone=BackboneIdentity.from_dict(_typed(data, "backbone", dict)),
            config=_typed(data, "config", dict),
            classnames=[str(n) for n in _typed(data, "classnames", list)],
            templates=[str(t) for t in _typed(data, "templates", list)],
            preprocessing=_typed(data, "preprocessing", dict),
            logit_scale=float(_typed(data, "logit_scale", (int, float))),
            provenance=_typed(data, "provenance", dict),
            metrics=_typed(data, "metrics", dict),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointCorruptError(path, f"malformed clipserve header ({error})") from error
    if header.kind not in KINDS:
        raise CheckpointCorruptError(path, f"unknown kind {header.kind!r}")
    return header


def _typed(data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data[key]
    if not isinstance(value, kind):
        raise TypeError(f"field {key!r} has type {type(value).__name__}")
    return value


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
