"""The text benchmark runs end to end on the tiny model and rewrites only its own doc section."""

from __future__ import annotations

from pathlib import Path

from bench.report import replace_section
from bench.text_truncation import main


def test_replace_section_appends_then_replaces_in_place(tmp_path: Path) -> None:
    doc = tmp_path / "PERFORMANCE.md"
    replace_section(doc, "a", "first A")
    replace_section(doc, "b", "only B")
    replace_section(doc, "a", "second A")
    text = doc.read_text()
    assert text.startswith("# Performance")
    assert "second A" in text and "first A" not in text and "only B" in text
    assert text.count("<!-- bench:a:start -->") == 1 and text.index("second A") < text.index("only B")


def test_benchmark_writes_its_section(tmp_path: Path) -> None:
    doc = tmp_path / "PERFORMANCE.md"
    argv = ["--arch", "clipserve-tiny-vit", "--prompts", "16", "--repeats", "2"]
    assert main([*argv, "--out", str(doc)]) == 0
    text = doc.read_text()
    assert "<!-- bench:text_truncation:cpu:start -->" in text
    assert "clipserve-tiny-vit" in text and "Speed-up" in text and "command: `python" in text
    assert main([*argv, "--out", str(doc)]) == 0
    assert doc.read_text().count("Speed-up") == 1
