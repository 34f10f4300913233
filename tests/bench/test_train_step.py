"""bench/train_step.py runs end to end on the tiny model (CPU smoke), and refuses without CUDA."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from models.prompts import METHODS

SCRIPT = Path(__file__).parents[2] / "bench" / "train_step.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_train_step", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_smoke_run_covers_every_stage_of_every_method(tmp_path: Path) -> None:
    out, rows = tmp_path / "steps.md", tmp_path / "steps.json"
    assert _load().main(["--smoke", "--out", str(out), "--json", str(rows)]) == 0
    table = out.read_text()
    for name, cls in METHODS.items():
        for stage in cls.training_stages:
            assert f"| {name} | {stage} |" in table
    assert "out of memory" not in table
    steps = json.loads(rows.read_text())  # what bench/gpu_check.py reads
    assert len(steps) == sum(len(cls.training_stages) for cls in METHODS.values())
    assert all(step["median_ms"] > 0 and step["classes"] == 6 for step in steps)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where CUDA is absent")
def test_without_cuda_it_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert _load().main([]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err
