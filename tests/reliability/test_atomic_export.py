"""Training -> service hand-over: an export never leaves a half-written file where the service
watches. Exports write a dot-file `.tmp` and rename it into place (models.checkpoint); the watcher
skips dot-files and `.tmp` names, so it only ever sees complete checkpoints, even when a writer is
mid-way through a save during a scan. (Resuming a killed training run to the same result is
tests/training/test_loop.py::test_killed_run_resumes_to_exactly_the_uninterrupted_result and
::test_sigkilled_process_resumes_to_exactly_the_uninterrupted_result.)"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

import models.checkpoint
from models.backbone import Backbone
from models.checkpoint import load_checkpoint, save_checkpoint
from service.catalog.watcher import Watcher
from tests.service.conftest import make_learner

SAVES = 30


class RecordingRegistry:
    """Stands in for the Registry (and its Lifecycle): loads each file the watcher hands over,
    strictly, and records nothing."""

    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.failures: list[str] = []
        self.active: dict[str, Any] = {}
        self.life = self

    async def load(self, path: Path, swap: bool = False) -> Any:
        self.loaded.append(path.name)
        try:
            load_checkpoint(path)
        except Exception as error:  # a half-written file would land here
            self.failures.append(f"{path.name}: {error}")

    def absorbed(self, file: str, sha256: str) -> bool:
        return False

    async def absorb(self, file: str, loaded: Any) -> None:
        pass


def test_watcher_only_ever_loads_complete_files_while_exports_are_written(
    tmp_path: Path, tiny_backbone: Backbone
) -> None:
    checkpoints = [make_learner(tiny_backbone, seed=s).to_checkpoint(provenance={}) for s in range(2)]
    registry = RecordingRegistry()
    watcher = Watcher(tmp_path, registry, interval_s=0.001, state_interval_s=1)  # type: ignore[arg-type]
    done = threading.Event()

    def export_repeatedly() -> None:
        for i in range(SAVES):
            save_checkpoint(tmp_path / "pets.safetensors", checkpoints[i % 2])
        done.set()

    async def scan_until_done() -> int:
        scans = 0
        writer = threading.Thread(target=export_repeatedly)
        writer.start()
        for _ in range(100_000):  # bounded; ends when the writer does
            await watcher.scan()
            scans += 1
            if done.is_set():
                break
        writer.join(timeout=60)
        await watcher.scan()
        return scans

    scans = asyncio.run(scan_until_done())
    assert scans > SAVES
    assert registry.loaded and set(registry.loaded) == {"pets.safetensors"}
    assert registry.failures == []
    assert not [p.name for p in tmp_path.iterdir() if p.name != "pets.safetensors"]  # no temp left


def test_a_temp_file_appearing_mid_scan_is_never_loaded(tmp_path: Path, tiny_backbone: Backbone) -> None:
    """A scan that lists the folder while temp files exist (with either suffix) loads none of them."""
    registry = RecordingRegistry()
    watcher = Watcher(tmp_path, registry, interval_s=1, state_interval_s=1)  # type: ignore[arg-type]
    learner = make_learner(tiny_backbone, seed=1)
    save_checkpoint(tmp_path / "a.safetensors", learner.to_checkpoint(provenance={}))
    listing = watcher.candidates

    def list_then_write_temps() -> list[Path]:
        found = listing()
        (tmp_path / ".b.safetensors.1-2.tmp").write_bytes(b"half")
        (tmp_path / ".b.safetensors").write_bytes(b"half")
        (tmp_path / "b.safetensors.tmp").write_bytes(b"half")
        return found + listing()

    watcher.candidates = list_then_write_temps  # type: ignore[method-assign]
    asyncio.run(watcher.scan())
    assert registry.loaded == ["a.safetensors"] and registry.failures == []


def test_an_export_that_dies_mid_write_leaves_the_previous_file_intact(
    tmp_path: Path, tiny_backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "pets.safetensors"
    save_checkpoint(target, make_learner(tiny_backbone, seed=1).to_checkpoint(provenance={}))
    before = target.read_bytes()

    def die_half_way(tensors: Any, filename: str, metadata: Any) -> None:
        Path(filename).write_bytes(before[: len(before) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(models.checkpoint, "save_file", die_half_way)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(target, make_learner(tiny_backbone, seed=2).to_checkpoint(provenance={}))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pets.safetensors"]
