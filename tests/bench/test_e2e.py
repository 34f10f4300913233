"""bench/e2e.py at its smallest: both real servers, one cell each, the section and plot written; and
the goal arithmetic on figures made up to sit on either side of each goal."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import e2e


def test_one_cell_per_server_through_http_writes_the_section_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "PERFORMANCE.md"
    args = e2e.parse_args(
        ["--concurrency", "2", "--images", "2", "--labels", "10", "--seconds", "0.5",
         "--warmup-seconds", "0.3", "--processes", "1", "--out", str(out)]
    )  # fmt: skip
    results = e2e.run(args)
    for name in ("clipserve", "baseline"):
        (row,) = results[name]
        assert row["codes"] == {"200": row["requests"]} and row["requests"] > 0
        assert row["images_per_s"] == pytest.approx(2 * row["ok_per_s"], abs=0.1) and row["ok_per_s"] > 0
    assert results["clipserve"][0]["server_p50_ms"] > 0  # Server-Timing came back
    text = e2e.report(args, results, load_average=0.0)
    assert (tmp_path / "e2e-cpu.png").stat().st_size > 1000  # beside the page (--out)
    assert "| 2 | 10 | 2 |" in text and "Baseline" in text


def row(images: int, labels: int, clients: int, per_s: float, p99: float = 10.0, server: float = 1.0) -> dict:
    return {"images": images, "labels": labels, "clients": clients, "ok_per_s": per_s,
            "images_per_s": per_s * images, "p99_ms": p99, "server_p50_ms": server}  # fmt: skip


def test_goal_checks_hold_and_fail_on_the_right_side_of_each_goal(tmp_path: Path) -> None:
    good = {
        "clipserve": [row(32, 10, 64, 260), row(1, 10, 256, 3100, p99=90), row(1, 10, 1, 200, server=4.0),
                      row(1, 10, 64, 2000)],
        "baseline": [row(1, 10, 64, 19.0)],
    }  # fmt: skip
    assert all(held for _, _, held in e2e.goal_checks(good, e2e.Goals()))
    bad = {
        "clipserve": [row(32, 10, 64, 240), row(1, 10, 256, 3100, p99=120), row(1, 10, 1, 200, server=6.0),
                      row(1, 10, 64, 2000)],
        "baseline": [row(1, 10, 64, 21.0)],
    }  # fmt: skip
    assert [held for _, _, held in e2e.goal_checks(bad, e2e.Goals())] == [False, False, False, False]
    label = "decode + encode ceiling, computed 1/(1/d + 1/e)"
    assert e2e.against_ceiling(good, {label: {"32": 11_000.0}})[2] is True  # 8,320 is 76%
    assert e2e.against_ceiling(good, {label: {"32": 12_000.0}})[2] is False  # 69%


def test_baseline_images_and_json_without_a_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/gpu_check.py runs the baseline on single images only and reads the rows from --json."""
    monkeypatch.setattr(e2e, "clipserve_server", lambda args: contextlib.nullcontext(SimpleNamespace(port=1)))
    monkeypatch.setattr(e2e, "baseline_server", lambda args: contextlib.nullcontext(SimpleNamespace(port=2)))
    monkeypatch.setattr(e2e, "measure", lambda port, cell, jpegs, args: {**vars(cell), "port": port})
    out, figures = tmp_path / "PERFORMANCE.md", tmp_path / "e2e.json"
    argv = ["--concurrency", "1", "64", "--images", "1", "32", "--labels", "10", "--baseline-images", "1",
            "--no-write", "--json", str(figures), "--out", str(out)]  # fmt: skip
    e2e.main(argv)
    rows = json.loads(figures.read_text())
    assert [(r["images"], r["clients"]) for r in rows["baseline"]] == [(1, 1), (1, 64)]
    assert len(rows["clipserve"]) == 4 and not out.exists()
