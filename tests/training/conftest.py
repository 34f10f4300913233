"""Fixtures for the training tests: a tiny image folder generated with Pillow (one colour per
class, so the tiny random CLIP can tell them apart a little), with one corrupt file among them."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

from training.pipeline import TrainRequest

CLASSES = ("red_square", "green_square", "blue_square", "yellow_square")
COLOURS = ((220, 30, 30), (30, 200, 40), (30, 40, 220), (230, 220, 30))
CORRUPT = "green_square/corrupt.jpg"


def make_image_folder(root: Path, per_class: int, seed: int = 0, corrupt: bool = True) -> Path:
    """`per_class` small PNGs per class with a varying shade and a dark patch at a varying place."""
    for c, (name, colour) in enumerate(zip(CLASSES, COLOURS, strict=True)):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shade = (i * 7 + seed * 13 + c) % 40
            image = Image.new("RGB", (40 + i % 3 * 4, 36), tuple(max(0, v - shade) for v in colour))
            image.paste((20, 20, 20), (i % 5 * 6, i % 4 * 7, i % 5 * 6 + 8, i % 4 * 7 + 8))
            image.save(folder / f"img_{i:03d}.png")
    if corrupt:
        (root / CORRUPT).write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    return root


@pytest.fixture(autouse=True)
def _one_intra_op_thread() -> Iterator[None]:
    """The tiny model's ops take microseconds; on a busy 2-core machine torch's intra-op thread
    pool turns each into milliseconds of spinning (25x slower measured). One thread here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def process_context() -> multiprocessing.context.BaseContext:
    """Child processes for the two-process and kill tests. A plain fork of the test process fails
    once it has run backward (autograd's threads do not survive fork), and spawn re-imports torch
    and open_clip per child (~15 s each on a busy 2-core machine); a forkserver that imported them
    once, before any autograd ran, forks children that start at once and may train."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "open_clip", "training.pipeline", "tests.training.conftest"])
    return context


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Training folder: 4 classes x 6 images (+1 corrupt file)."""
    return make_image_folder(tmp_path_factory.mktemp("train_images"), per_class=6)


@pytest.fixture(scope="session")
def test_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Held-out folder of the same classes (other shades), also with a corrupt file."""
    return make_image_folder(tmp_path_factory.mktemp("test_images"), per_class=4, seed=1)


def tiny_request(data: Path, out: Path, **overrides: object) -> TrainRequest:
    """A fast CoOp run on the tiny random CLIP: 4 context tokens, 2 epochs of batch 4."""

    fields: dict = {
        "data": str(data),
        "out": str(out),
        "arch": "clipserve-tiny-vit",
        "pretrained": None,
        "shots": 4,
        "learner": {"n_ctx": 4},
        "hparams": {"epochs": 2, "batch_size": 4},
        "num_workers": 0,
        "progress": False,
        "log_every": 1,
    }
    fields.update(overrides)
    return TrainRequest(**fields)  # type: ignore[arg-type]
