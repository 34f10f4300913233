"""open_clip warns "No pretrained weights loaded ... initialized randomly" whenever it builds a model
without a tag. Loading a weights file builds first and loads right after, so that warning would be
false there: it is dropped for that call only, and stays for models that really are random."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from models.backbone import build_backbone

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo" / "backbone.safetensors"


def random_init_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "initialized randomly" in r.getMessage()]


def test_loading_a_weights_file_logs_no_random_init_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    build_backbone("clipserve-demo-vit", str(DEMO))
    assert random_init_warnings(caplog) == []
    logging.getLogger().warning("a real warning after the load")  # the filter is gone again
    assert "a real warning after the load" in caplog.text


def test_random_weights_still_warn(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    build_backbone("clipserve-tiny-vit", None)
    assert len(random_init_warnings(caplog)) == 1
