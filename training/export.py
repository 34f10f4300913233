"""`clipserve export`: a trained checkpoint -> the servable checkpoint (class embeddings of the
trained classes precomputed, evaluation results in the header) and, optionally, the image encoder
as ONNX with a dynamic batch axis, checked against torch on CPU."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.backbone import file_sha256
from models.checkpoint import read_header, save_checkpoint
from models.onnx_export import export_image_encoder, onnx_max_difference, stock_image_encoder
from models.prompts import PromptLearner
from training.learners import load_learner

ONNX_TOLERANCE = 1e-3  # fp32 ONNX Runtime vs torch, max abs difference of normalised embeddings


class OnnxMismatchError(RuntimeError):
    pass


@dataclass
class ExportResult:
    checkpoint: Path
    onnx: Path | None = None
    onnx_max_difference: float | None = None


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    report: str | Path | None = None,
    onnx: str | Path | None = None,
    pretrained: str | None = None,
    check_onnx: bool = True,
) -> ExportResult:
    """Rebuild the learner on its backbone (fp32, CPU), then write the export files."""
    learner = load_learner(checkpoint, pretrained=pretrained, device="cpu")
    provenance = dict(read_header(checkpoint).provenance)
    provenance["exported"] = {"from": str(checkpoint), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    result = ExportResult(checkpoint=Path(out))
    result.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    if onnx is not None:
        result.onnx, result.onnx_max_difference = export_onnx(learner, Path(onnx), check_onnx)
        provenance["onnx"] = {
            "file": result.onnx.name,
            "sha256": file_sha256(result.onnx),
            "max_abs_difference_vs_torch": result.onnx_max_difference,
        }
    metrics = report_metrics(Path(report)) if report is not None else {}
    save_checkpoint(out, learner.serving_learner().to_checkpoint(provenance=provenance, metrics=metrics))
    return result


def image_encoder_of(learner: PromptLearner) -> Any:
    """The stock tower, unless the method changes the image side (MaPLe): then its own forward."""
    if learner.custom_image_encoder:
        return learner.image_embeddings
    return stock_image_encoder(learner.backbone)


def export_onnx(learner: PromptLearner, path: Path, check: bool) -> tuple[Path, float | None]:
    encoder = image_encoder_of(learner)
    size = learner.backbone.preprocessing.image_size
    export_image_encoder(encoder, path, size)
    if not check:
        return path, None
    pixels = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    difference = onnx_max_difference(encoder, path, pixels)
    if difference > ONNX_TOLERANCE:
        raise OnnxMismatchError(
            f"{path}: ONNX Runtime differs from torch by {difference:.2e} > {ONNX_TOLERANCE}"
        )
    return path, difference


def report_metrics(path: Path) -> dict[str, Any]:
    """The header's share of an evaluation report: mode, summary and per-set accuracy (the
    per-class tables and plots stay in the report files)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    sets = {
        name: {"accuracy": s["accuracy"], "images": s["images"], "classes": s["classes"]}
        for name, s in data.get("sets", {}).items()
    }
    return {"mode": data.get("mode"), "summary": data.get("summary", {}), "sets": sets, "report": str(path)}
