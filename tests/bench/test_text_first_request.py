"""The first-request text benchmark: a real `clipserve serve` on the tiny model answers new, cached
and few-cached requests; the section is written with positive figures; labels are never reused."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bench.text_first_request import FreshLabels, main

MS = r"([\d.]+) ms"


def test_fresh_labels_never_repeat() -> None:
    fresh = FreshLabels(seed=0)
    first, second = fresh.take(500), fresh.take(500)
    assert len(set(first) | set(second)) == 1000
    assert FreshLabels(seed=0).take(10) == first[:10]  # seeded: a rerun asks for the same labels


def test_benchmark_writes_its_section(tmp_path: Path) -> None:
    doc = tmp_path / "PERFORMANCE.md"
    argv = ["--arch", "clipserve-tiny-vit", "--pretrained", "random", "--labels", "20", "--few", "5"]
    assert main([*argv, "--repeats", "2", "--encoder-repeats", "1", "--out", str(doc)]) == 0
    text = doc.read_text()
    assert text.count("<!-- bench:text-first-request:cpu:start -->") == 1
    rows = ("1 image + 20 new labels", "the same request again (20 cached labels)", "1 image + 5 cached")
    for label in rows:
        row = re.search(re.escape(label) + rf".*? \| {MS} \| {MS} \| {MS} \|", text)
        assert row is not None and all(float(value) > 0 for value in row.groups()), label
    assert re.search(rf"open_clip `encode_text`, full context \(77 tokens\) \| {MS}", text)
    assert "pending" in text and "command: `python" in text
    figures = tmp_path / "figures.json"
    assert (
        main([*argv, "--repeats", "1", "--encoder-repeats", "1", "--no-write", "--json", str(figures)]) == 0
    )
    raw = json.loads(figures.read_text())  # what bench/gpu_check.py reads
    assert raw["labels"] == 20 and len(raw["new_s"]) == len(raw["cached_s"]) == 1
