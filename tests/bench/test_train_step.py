"""bench/train_step.py runs end to end on the tiny model (CPU smoke), and refuses without CUDA."""

from __future__ import annotations

import importlib.util
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
    out = tmp_path / "steps.md"
    assert _load().main(["--smoke", "--out", str(out)]) == 0
    table = out.read_text()
    for name, cls in METHODS.items():
        for stage in cls.training_stages:
            assert f"| {name} | {stage} |" in table
    assert "out of memory" not in table


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where CUDA is absent")
def test_without_cuda_it_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert _load().main([]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err
