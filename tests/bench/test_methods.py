"""bench/methods.py: the --quick smoke run goes through every protocol on the bundled backbones,
and docs/METHODS.md is exactly what the report code makes of the committed METHODS.json."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "bench" / "methods.py"
DOC = ROOT / "docs" / "METHODS.md"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_methods", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One thread for the bench, and the suite's count restored after: other tests compare logits
    with a fresh process, which only match bit for bit at the same thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_quick_run_covers_every_protocol_and_says_where_it_ran(tmp_path: Path) -> None:
    out = tmp_path / "METHODS.md"
    argv = ["--quick", "--out", str(out), "--work", str(tmp_path / "work"), "--threads", "1"]
    assert _load().main(argv) == 0
    results = json.loads(out.with_suffix(".json").read_text())
    assert set(results) == {
        "conditions",
        "few_shot",
        "sixteen",
        "base_to_new",
        "ship_setting",
        "pretraining",
        "run",
    }
    methods = set(results["sixteen"]["table"])
    assert {"zero-shot", "zero-shot ensemble", "linear probe", "coop", "cocoop", "maple", "gopro"} == methods
    b2n = set(results["base_to_new"]["table"])
    assert {"coop-b2n", "cocoop", "maple", "gopro", "ship", "linear probe"} <= b2n
    assert set(results["pretraining"]["table"]) == {"ProtoCLIP", "InfoNCE"}
    text = out.read_text()
    assert text.startswith("# Methods on the procedural world")
    for line in ("- command: `python ", "- date: ", "- machine: ", "- load average", "--quick smoke run"):
        assert line in text
    assert "## 7. The papers' claims, one by one" in text
    assert (tmp_path / "methods" / "few-shot.png").stat().st_size > 0


def test_the_committed_report_is_the_output_of_the_script(tmp_path: Path) -> None:
    from bench.methods_report import write_report

    results = json.loads(DOC.with_suffix(".json").read_text())
    assert results["run"]["command"].startswith("python bench/methods.py")
    assert not results["run"]["quick"]
    regenerated = tmp_path / "METHODS.md"
    write_report(results, regenerated)
    assert regenerated.read_text() == DOC.read_text()
