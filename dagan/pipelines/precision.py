"""Arithmetic precision modes shared by animation, generation and training."""

from __future__ import annotations

import contextlib

import torch

from dagan.errors import DaganError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse modes the device cannot run, with a one-line reason."""
    if precision not in PRECISIONS:
        raise DaganError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type == "cpu":
        raise DaganError("--precision fp16 needs a GPU; on CPU use bf16")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast to ``precision`` on ``device``; fp32 runs as it is."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision])
