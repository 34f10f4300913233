"""The ONNX-vs-torch CPU benchmark: runs end to end on the tiny model, writes only its section and a
plot with positive figures, and refuses to time encoders that do not compute the same function."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from bench.onnx_cpu import DisagreementError, check_agreement, main
from models.backbone import Backbone, build_backbone
from service.engine.backends import TorchImageEncoder

FIGURE = r"([\d.]+)"
# | batch | torch median (best) | onnx median (best) | speed-up× | best/best× |
ROW = re.compile(
    rf"^\| (\d+) \| {FIGURE} \({FIGURE}\) \| {FIGURE} \({FIGURE}\) \| {FIGURE}× \| {FIGURE}× \|$",
    re.MULTILINE,
)


def test_benchmark_writes_its_section_and_plot(tmp_path: Path) -> None:
    doc, plot = tmp_path / "PERFORMANCE.md", tmp_path / "onnx-cpu.png"
    argv = ["--arch", "clipserve-tiny-vit", "--batch-sizes", "1", "4", "--repeats", "2"]
    argv += ["--profile-runs", "1", "--lever-repeats", "0", "--out", str(doc), "--plot", str(plot)]
    assert main(argv) == 0
    text = doc.read_text()
    assert text.count("<!-- bench:onnx-cpu:start -->") == 1
    rows = ROW.findall(text)
    assert [int(row[0]) for row in rows] == [1, 4]
    assert all(float(value) > 0 and math.isfinite(float(value)) for row in rows for value in row[1:])
    assert "| `MatMul` |" in text or "| `Gemm` |" in text  # ONNX Runtime's profile was parsed
    assert "aten::" in text and "command: `python" in text
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_the_agreement_check_rejects_a_different_encoder(tiny_backbone: Backbone) -> None:
    same = TorchImageEncoder(tiny_backbone)
    other = TorchImageEncoder(build_backbone("clipserve-tiny-vit", pretrained=None, seed=1))
    size = tiny_backbone.preprocessing.image_size
    assert check_agreement(same, same, size, tolerance=1e-3) == 0.0
    with pytest.raises(DisagreementError):
        check_agreement(same, other, size, tolerance=1e-3)
    with pytest.raises(DisagreementError):  # NaN must not slip through a `>` comparison
        check_agreement(same, lambda pixels: torch.full_like(same(pixels), math.nan), size, 1e-3)
