"""Recompute activations in the backward pass instead of keeping them (``dagan train --low-memory``).

Autograd keeps every intermediate tensor a block's backward needs; for the generator at 256x256
those are most of a training step's peak memory. A recomputed block keeps only its inputs and
runs its forward again when its gradients are needed (``torch.utils.checkpoint``), so a step
costs one more forward of those blocks.

The second forward must see the state the first one saw: in training mode batch norm updates its
running statistics on every call and spectral norm advances its power iteration, so a plain
recomputation would update them twice and, for spectral norm, compute gradients for a different
weight. The block's buffers are therefore put back as the first forward found them for the
recomputation, and restored afterwards. Losses, gradients and buffers are then the same as
without recomputation (tests/test_recompute.py).
"""

from __future__ import annotations

import contextlib
import functools
import types

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from dagan.nn.attention import DepthAwareAttention
from dagan.nn.common import DownBlock2d, Hourglass, ResBlock2d, SameBlock2d, UpBlock2d
from dagan.nn.spade_generator import SPADEResnetBlock

#: The units that are recomputed: each keeps its inputs, and what it computes inside is dropped.
#: Larger units keep less but hold more while one is recomputed; these are the blocks the
#: networks are built from (an hourglass as a whole: its skip connections span all its blocks).
RECOMPUTED_BLOCKS = (SameBlock2d, DownBlock2d, UpBlock2d, ResBlock2d, Hourglass, DepthAwareAttention, SPADEResnetBlock)


class _FirstPassBuffers:
    """Buffers as the first forward saw them, for as long as a recomputation runs.

    Entered once per recomputation: a graph kept with ``retain_graph`` recomputes the block on
    each backward pass through it.
    """

    def __init__(self, buffers: list[torch.Tensor], first_pass: list[torch.Tensor]):
        self.buffers, self.first_pass = buffers, first_pass
        self.current: list[list[torch.Tensor]] = []

    @torch.no_grad()
    def __enter__(self) -> None:
        self.current.append([buffer.clone() for buffer in self.buffers])
        for buffer, value in zip(self.buffers, self.first_pass, strict=True):
            buffer.copy_(value)

    @torch.no_grad()
    def __exit__(self, *exc_info: object) -> None:
        for buffer, value in zip(self.buffers, self.current.pop(), strict=True):
            buffer.copy_(value)


def _recomputed_forward(self: nn.Module, *args, **kwargs):
    forward = functools.partial(type(self).forward, self)
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    # Looked up on each call: moving a module to another device replaces its buffers.
    buffers = list(self.buffers())
    with torch.no_grad():
        first_pass = [buffer.clone() for buffer in buffers]

    def contexts() -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
        return contextlib.nullcontext(), _FirstPassBuffers(buffers, first_pass)

    return checkpoint(forward, *args, use_reentrant=False, context_fn=contexts, **kwargs)


def recompute_in_backward(module: nn.Module) -> None:
    """Make ``module`` keep only its inputs for backward and run its forward again there.

    The module's state-dict keys are unchanged, and a deep copy of it recomputes its own blocks
    (the forward is bound to the module, not captured). Under ``no_grad`` or ``inference_mode``
    (validation, animation) it runs as before; eval mode alone still recomputes.
    """
    module.forward = types.MethodType(_recomputed_forward, module)


def recompute_blocks(network: nn.Module) -> int:
    """Recompute each outermost ``RECOMPUTED_BLOCKS`` module of ``network`` in backward; returns how many."""
    count = 0
    for child in network.children():
        if isinstance(child, RECOMPUTED_BLOCKS):
            recompute_in_backward(child)
            count += 1
        else:
            count += recompute_blocks(child)
    return count
