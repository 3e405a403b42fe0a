"""What autograd keeps for backward while a function runs, for tests of the lean backward passes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def saved_bytes(run: Callable[[], Any]) -> tuple[Any, int]:
    """``run()``'s result and the bytes of the storages autograd saved for backward meanwhile, parameters left out."""
    stored: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if not isinstance(tensor, torch.nn.Parameter):
            stored[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = run()
    return result, sum(stored.values())
