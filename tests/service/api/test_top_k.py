"""top_k: the answer of the per-element version, from a fixed number of tensor ops per batch."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from service.api.classify import top_k

Answer = list[dict[str, Any]]


def per_element(scores: torch.Tensor, cosine: torch.Tensor, labels: list[str], k: int) -> Answer:
    """The implementation before #16: one float(tensor[i, j]) per number."""
    values, indices = scores.topk(min(k, scores.shape[1]), dim=-1)
    return [
        {
            "predictions": [
                {"label": labels[j], "score": float(v), "cosine": float(cosine[i, j])}
                for v, j in zip(values[i].tolist(), indices[i].tolist(), strict=True)
            ]
        }
        for i in range(len(scores))
    ]


class CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def batch(n: int, c: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    cosine = (torch.rand(n, c, generator=generator) * 2 - 1).to(dtype)
    return torch.softmax(100 * cosine.float(), dim=-1).to(dtype), cosine


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("n", "c", "k"), [(1, 1, 5), (1, 10, 3), (32, 10, 5), (7, 1000, 1000), (3, 5, 5)])
def test_same_answer_as_per_element(n: int, c: int, k: int, dtype: torch.dtype) -> None:
    scores, cosine = batch(n, c, dtype, seed=n + c)
    labels = [f"label {i}" for i in range(c)]
    answer = top_k(scores, cosine, labels, k)
    assert answer == per_element(scores, cosine, labels, k)
    numbers = [(p["score"], p["cosine"]) for r in answer for p in r["predictions"]]
    assert all(type(score) is float and type(cos) is float for score, cos in numbers)


def test_ties_keep_topks_order() -> None:
    scores = torch.full((2, 6), 1 / 6)
    cosine = torch.arange(12, dtype=torch.float32).reshape(2, 6)
    labels = list("abcdef")
    assert top_k(scores, cosine, labels, 4) == per_element(scores, cosine, labels, 4)


def test_the_ops_do_not_grow_with_the_batch() -> None:
    counts = []
    for n in (1, 32):
        scores, cosine = batch(n, 10)
        with CountOps() as mode:
            top_k(scores, cosine, [str(i) for i in range(10)], 5)
        counts.append(mode.ops)
    assert counts[0] == counts[1]
    assert counts[1]["aten._local_scalar_dense"] == 0  # no float(tensor) / .item(): no per-number copy
    assert counts[1]["aten.topk"] == counts[1]["aten.gather"] == counts[1]["aten.stack"] == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_one_host_copy_on_cuda() -> None:
    scores, cosine = (t.cuda() for t in batch(32, 100))
    torch.cuda.synchronize()
    with CountOps() as mode:
        answer = top_k(scores, cosine, [str(i) for i in range(100)], 5)
    assert answer == per_element(scores.cpu(), cosine.cpu(), [str(i) for i in range(100)], 5)
    assert mode.ops["aten._local_scalar_dense"] == 0  # no per-number synchronising copy
