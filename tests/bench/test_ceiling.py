"""The ceiling bench runs end to end on the tiny model in seconds, writes its own doc section and a
plot, and its serial ceiling is the harmonic combination of decode and encode."""

from __future__ import annotations

from pathlib import Path

from bench.ceiling import Series, main, serial_ceiling


def test_serial_ceiling_is_one_over_the_summed_per_image_times() -> None:
    decode, encode = Series("d", {1: 100.0, 8: 400.0}), Series("e", {1: 100.0, 8: 400.0, 16: 9.0})
    assert serial_ceiling(decode, encode).images_per_s == {1: 50.0, 8: 200.0}


def test_ceiling_bench_writes_its_section_and_plot(tmp_path: Path) -> None:
    doc, plot = tmp_path / "PERFORMANCE.md", tmp_path / "ceiling.png"
    doc.write_text("# Performance\n\n<!-- bench:other:start -->\nkeep me\n<!-- bench:other:end -->\n")
    argv = ["--arch", "clipserve-tiny-vit", "--batch-sizes", "1,2", "--images", "2", "--repeats", "1"]
    assert main([*argv, "--width", "64", "--height", "48", "--out", str(doc), "--plot", str(plot)]) == 0
    text = doc.read_text()
    assert "keep me" in text and text.count("<!-- bench:ceiling:cpu:start -->") == 1
    for label in ("image encoder, eager", "torchvision tensors", "Pillow", "measured back to back"):
        assert label in text, label
    assert "batch 32 not measured" in text and f"]({plot.name})" in text
    assert "tensor decode + resize vs Pillow" in text and "max difference" in text
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
