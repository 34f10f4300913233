"""`gpu`: the text path and the prompt learners' logits and training loss queue GPU work without the
host waiting for it. torch.cuda.set_sync_debug_mode("error") turns every synchronising call
(`.item()` of a CUDA tensor, a copy from pageable memory, ...) into an error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from models.backbone import Backbone, build_backbone
from models.prompts import METHODS, Batch
from models.text import encode_texts
from models.zeroshot import DEFAULT_TEMPLATES, class_embedding_matrix
from tests.conftest import TINY_ARCH, TINY_SEED

CLASSES = ["cat", "dog", "a red double-decker bus"]


@contextmanager
def no_host_sync() -> Iterator[None]:
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(0)


@pytest.fixture(scope="module")
def cuda_backbone() -> Backbone:
    return build_backbone(TINY_ARCH, None, precision="bf16", device="cuda", seed=TINY_SEED)


@pytest.mark.gpu
def test_text_features_and_class_matrices_never_wait_for_the_gpu(cuda_backbone: Backbone) -> None:
    class_embedding_matrix(cuda_backbone, CLASSES, DEFAULT_TEMPLATES)  # lazy CUDA set-up outside the check
    with no_host_sync():
        texts = encode_texts(cuda_backbone, CLASSES)  # [3, D]
        # chunks of 2 prompts: the per-chunk token copies are where pageable copies used to wait
        matrix = class_embedding_matrix(cuda_backbone, CLASSES, DEFAULT_TEMPLATES, prompts_per_chunk=2)
    assert texts.shape == matrix.shape == (3, cuda_backbone.embed_dim)
    assert torch.isfinite(matrix).all()


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["coop", "cocoop"])
def test_logits_and_a_training_step_never_wait_for_the_gpu(cuda_backbone: Backbone, method: str) -> None:
    """CoOp scores with the cached class matrix; CoCoOp is the image-conditioned lane's path
    (per-image prompts, chunked over classes). Both scale by backbone.logit_scale."""
    learner = METHODS[method](cuda_backbone, CLASSES).to("cuda")
    size = cuda_backbone.preprocessing.image_size
    images = torch.randn(4, 3, size, size, device="cuda")
    batch = Batch(labels=torch.tensor([0, 1, 2, 0], device="cuda"), images=images)
    with torch.no_grad():
        learner.logits(images, CLASSES)  # lazy set-up outside the check
    with no_host_sync():
        with torch.no_grad():
            logits = learner.logits(images, CLASSES)  # [4, 3]
        loss = learner.loss(batch)
        loss.backward()
    assert logits.shape == (4, 3) and torch.isfinite(logits).all()
    assert all(p.grad is not None for p in learner.trainable_parameters())
