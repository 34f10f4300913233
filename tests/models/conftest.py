from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from models.backbone import Backbone
from tests.models.perturbed import perturbed_backbone


@pytest.fixture(scope="session")
def math_backbone() -> Backbone:
    """The three-block, distinct-width tiny CLIP with every weight perturbed (tests/models/perturbed.py);
    shared, so tests must not change it."""
    return perturbed_backbone()


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """The plain references run thousands of tiny ops; on a busy 2-core machine torch's intra-op
    thread pool turns each into milliseconds of spinning (10x slower measured). One thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
