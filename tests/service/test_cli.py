"""`clipserve serve` start-up: --help without the heavy imports, and an offline start that fails at
once with what to do instead of retrying downloads. Subprocesses, as a user runs them; no timing
asserts (the seconds are measured in the issue's report, not here)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from service.preflight import weights_problem
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "open_clip", "torchvision")


def clipserve(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the console command with -X importtime: stderr then lists every module imported."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "CLIPSERVE_", "TRANSFORMERS_"))}
    environment = {**clean, "PYTHONPATH": str(ROOT), "HF_HOME": str(tmp_path / "hf"), **env}
    command = [sys.executable, "-X", "importtime", str(ROOT / "clipserve_cli.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=120)


def imported(result: subprocess.CompletedProcess[str]) -> set[str]:
    lines = (line.rpartition("|")[2].strip() for line in result.stderr.splitlines() if "import time:" in line)
    return {name.split(".")[0] for name in lines}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"]])
def test_help_imports_neither_torch_nor_open_clip(args: list[str], tmp_path: Path) -> None:
    result = clipserve(args, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage: clipserve" in result.stdout
    assert not imported(result) & set(HEAVY)


def test_serve_without_network_fails_at_once_and_says_what_to_do(tmp_path: Path) -> None:
    """No network (the hub endpoint refuses connections), empty hub cache, the default tag: the
    preflight fails before torch is imported, so no download (and no retry loop) can start."""
    result = clipserve(
        ["serve", "--port", str(closed_port())], tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}"
    )
    assert result.returncode == 2
    message = result.stderr.splitlines()[-1]
    assert "cannot be reached" in message and "`make serve`" in message and "--pretrained FILE" in message
    assert not imported(result) & set(HEAVY)


def test_an_unreachable_hub_with_a_cache_means_offline_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    settings = Settings(arch="ViT-B-32", pretrained="openai")
    assert weights_problem(settings, timeout_s=0.5) is not None  # empty cache: nothing to load
    (tmp_path / "models--timm--vit_base_patch32_clip_224.openai").mkdir()
    assert weights_problem(settings, timeout_s=0.5) is None
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # loading answers from the cache or fails at once


def test_files_random_weights_and_a_reachable_hub_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"x")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    assert weights_problem(Settings(pretrained=str(weights))) is None
    assert weights_problem(Settings(pretrained="random")) is None
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listening.getsockname()[1]}")
        assert weights_problem(Settings(pretrained="openai")) is None
    assert "HF_HUB_OFFLINE" not in os.environ
