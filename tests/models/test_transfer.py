"""Host-to-device copies on the hot paths: pinned and non-blocking to CUDA, plain elsewhere."""

from __future__ import annotations

from typing import Any

import torch

from models.transfer import to_device


class FakeHostTensor:
    """Records what to_device asks of a host tensor; CUDA is not needed to check the calls."""

    is_cuda = False

    def __init__(self, pinned: bool = False) -> None:
        self.pinned, self.calls = pinned, []  # type: ignore[var-annotated]

    def is_pinned(self) -> bool:
        return self.pinned

    def pin_memory(self) -> FakeHostTensor:
        self.calls.append("pin_memory")
        return FakeHostTensor(pinned=True)

    def to(self, device: torch.device, non_blocking: bool = False) -> dict[str, Any]:
        return {"device": device, "non_blocking": non_blocking, "pinned": self.pinned}


def test_copies_to_cuda_go_through_pinned_memory_without_blocking() -> None:
    pageable = FakeHostTensor()
    moved = to_device(pageable, "cuda")  # type: ignore[arg-type]
    assert pageable.calls == ["pin_memory"]
    assert moved == {"device": torch.device("cuda"), "non_blocking": True, "pinned": True}


def test_already_pinned_tensors_are_not_pinned_again() -> None:
    pinned = FakeHostTensor(pinned=True)
    moved = to_device(pinned, torch.device("cuda", 1))  # type: ignore[arg-type]
    assert pinned.calls == [] and moved["non_blocking"] and moved["device"] == torch.device("cuda", 1)


def test_on_the_cpu_it_is_a_plain_move() -> None:
    tokens = torch.arange(6).view(2, 3)
    assert to_device(tokens, "cpu") is tokens
