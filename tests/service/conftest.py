"""End-to-end harness: a real uvicorn on a loopback port, in a thread of the test process.

Running in-process lets a test register a test-only prompt method into METHODS and look at the
registry (e.g. that a retired version was freed); everything else goes over HTTP with httpx.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
import uvicorn
from open_clip.transform import image_transform
from PIL import Image

from models.backbone import Backbone
from models.checkpoint import save_checkpoint
from models.prompts import CoOp, CoOpConfig, PromptLearner
from models.zeroshot import class_embedding_matrix
from service.api.app import create_app
from service.runtime import State
from service.settings import Settings

CLASSES = ["cat", "dog", "bird", "fish", "horse"]
ADMIN_TOKEN = "test-token"
START_TIMEOUT_S = 60.0


class ServerThread:
    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self.state: State = self.app.state.clipserve
        # Port 0: uvicorn binds a free port itself (a socket made here would lack proto=TCP, so
        # asyncio would not set TCP_NODELAY on its connections: 40 ms delayed-ACK stalls).
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=5
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""

    def start(self, wait_ready: bool = True) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        if wait_ready:
            wait_until(lambda: httpx.get(self.url + "/health/ready").status_code == 200, START_TIMEOUT_S)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "uvicorn did not stop"

    @property
    def registry(self) -> Any:
        assert self.state.runtime is not None
        return self.state.runtime.registry


def wait_until(condition: Any, timeout_s: float, interval_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {timeout_s} s"
        time.sleep(interval_s)


def server_settings(checkpoint_dir: Path | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "arch": "clipserve-tiny-vit",
        "pretrained": "random",
        "seed": 0,
        "device": "cpu",
        "checkpoint_dir": checkpoint_dir,
        "watch_interval_s": 0.1,
        "admin_token": ADMIN_TOKEN,
        "max_wait_ms": 2,
        "drain_grace_s": 0,
    }
    values.update(overrides)
    return Settings(**values)


@contextmanager
def running(settings: Settings, wait_ready: bool = True) -> Iterator[ServerThread]:
    server = ServerThread(settings).start(wait_ready)
    try:
        yield server
    finally:
        server.stop()


# -- checkpoints and images ---------------------------------------------------------------------


def make_learner(
    backbone: Backbone, seed: int, method: type[PromptLearner] = CoOp, classnames: Sequence[str] = CLASSES
) -> PromptLearner:
    torch.manual_seed(seed)
    learner = method(backbone, classnames, CoOpConfig(n_ctx=4, init_std=0.5))
    return learner.eval()


def write_checkpoint(path: Path, learner: PromptLearner) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(path, learner.to_checkpoint(provenance={"test": True}))


def image_bytes(seed: int, size: tuple[int, int] = (48, 40), fmt: str = "PNG") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def offline_pixels(backbone: Backbone, data: bytes) -> torch.Tensor:
    """[1, 3, S, S] through open_clip's own eval transform (independent of service.engine.decode)."""
    pre = backbone.preprocessing
    transform = image_transform(
        pre.image_size, is_train=False, mean=pre.mean, std=pre.std,
        resize_mode=pre.resize_mode, interpolation=pre.interpolation,
    )  # fmt: skip
    return transform(Image.open(io.BytesIO(data)).convert("RGB")).unsqueeze(0)


@torch.no_grad()
def offline_scores(
    backbone: Backbone,
    learner: PromptLearner | None,
    data: bytes,
    labels: Sequence[str],
    templates: Sequence[str] = ("a photo of a {}.",),
) -> dict[str, tuple[float, float]]:
    """label -> (score, cosine) for one image, batch size 1: the unbatched reference."""
    pixels = offline_pixels(backbone, data)
    if learner is None:
        features = backbone.encode_images(pixels)
        logits = backbone.logit_scale * features @ class_embedding_matrix(backbone, labels, templates).t()
    else:
        logits = learner.logits(pixels, list(labels))
    scores = logits.softmax(dim=-1)[0]
    cosine = logits[0] / backbone.logit_scale
    return {label: (float(scores[i]), float(cosine[i])) for i, label in enumerate(labels)}


def assert_matches(
    result: dict[str, Any], expected: dict[str, tuple[float, float]], atol: float = 1e-5
) -> None:
    predictions = result["predictions"]
    assert len(predictions) == len(expected)
    assert [p["score"] for p in predictions] == sorted((p["score"] for p in predictions), reverse=True)
    for prediction in predictions:
        score, cosine = expected[prediction["label"]]
        assert abs(prediction["score"] - score) < atol, (prediction, score)
        assert abs(prediction["cosine"] - cosine) < atol, (prediction, cosine)


def multipart(images: Sequence[bytes], labels: Sequence[str] = (), **fields: Any) -> dict[str, Any]:
    """httpx kwargs for a multipart /classify request with repeated fields."""
    data: dict[str, Any] = {
        key: [str(v) for v in value] if isinstance(value, list | tuple) else str(value)
        for key, value in fields.items()
    }
    if labels:
        data["labels"] = list(labels)
    files = [("images", (f"{i}.png", blob, "image/png")) for i, blob in enumerate(images)]
    return {"data": data, "files": files}


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def methods(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Register test-only prompt methods into METHODS for one test."""
    from models.prompts import METHODS

    def register(*classes: type[PromptLearner]) -> None:
        for cls in classes:
            monkeypatch.setitem(METHODS, cls.method, cls)

    return register
