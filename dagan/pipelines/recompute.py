"""Recompute activations in the backward pass instead of keeping them (``dagan train --low-memory``).

Autograd keeps every intermediate tensor a block's backward needs; for the generator at 256x256
those are most of a training step's peak memory. A recomputed block keeps only its inputs and
runs its forward again when its gradients are needed, so a step costs one more forward of
those blocks.

This is what ``torch.utils.checkpoint`` does without reentrance (autograd's saved-tensor hooks
keep a number instead of each tensor; the first backward access recomputes them all), written
here because torch's reads ``torch._dynamo``'s config on every call: importing it costs about
150 MB resident in a process that never compiles (``dagan.pipelines.optim``). The recomputed
blocks draw no random numbers, so no generator state is kept; autocast is restored.

The second forward must see the state the first one saw: in training mode batch norm updates its
running statistics on every call and spectral norm advances its power iteration, so a plain
recomputation would update them twice and, for spectral norm, compute gradients for a different
weight. The block's buffers are therefore put back as the first forward found them for the
recomputation, and restored afterwards. Losses, gradients and buffers are then the same as
without recomputation (tests/test_recompute.py).

A recomputation stops as soon as it has every tensor the first forward saved. Autograd saves an
operation's inputs before the operation runs, so what a block computes after its last save (a
residual block's second convolution, whose output nobody's backward needs) is never run again:
about 0.15 s of a full-size training step, at no cost in memory. What the recomputation saves up
to that point must match the first forward's tensors in number, shape and dtype; one that would
go on to save more is not seen (torch.utils.checkpoint's early stop has the same limit), and
forward hooks of the layers after the last save do not run a second time.
"""

from __future__ import annotations

import functools
import types

import torch
from torch import nn

from dagan.nn.attention import DepthAwareAttention
from dagan.nn.common import DownBlock2d, Hourglass, ResBlock2d, SameBlock2d, UpBlock2d
from dagan.nn.spade_generator import SPADEResnetBlock

#: The units that are recomputed: each keeps its inputs, and what it computes inside is dropped.
#: Larger units keep less but hold more while one is recomputed; these are the blocks the
#: networks are built from (an hourglass as a whole: its skip connections span all its blocks).
RECOMPUTED_BLOCKS = (SameBlock2d, DownBlock2d, UpBlock2d, ResBlock2d, Hourglass, DepthAwareAttention, SPADEResnetBlock)


# A BaseException, so that no `except Exception` inside a recomputed block can swallow it.
class _AllSaved(BaseException):
    """Raised by the recomputation's pack hook at the last tensor it needs: the rest of the forward is not run."""


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


class _Recomputation:
    """One call of a block: numbers in place of the tensors its forward saved, and their recomputation."""

    def __init__(self, forward, args: tuple, kwargs: dict, buffers: _FirstPassBuffers):
        # Detached: the inputs are kept as values, not with the graph that made them.
        self.forward, self.buffers = forward, buffers
        self.args = tuple(_detached(value) for value in args)
        self.kwargs = {key: _detached(value) for key, value in kwargs.items()}
        self.device = next((a.device.type for a in (*args, *kwargs.values()) if torch.is_tensor(a)), "cpu")
        self.autocast = (torch.is_autocast_enabled(self.device), torch.get_autocast_dtype(self.device))
        self.versions: list[int] = []
        self.saved: list[tuple[torch.Size, torch.dtype]] = []
        self.recomputed: dict[int, torch.Tensor] = {}

    def pack(self, tensor: torch.Tensor) -> int:
        self.saved.append((tensor.shape, tensor.dtype))
        return len(self.saved) - 1

    def unpack(self, index: int) -> torch.Tensor:
        if index not in self.recomputed:
            # The first tensor asked for in this backward pass (or again, in a later one with
            # a kept graph): the same forward saves the same tensors in the same order.
            self.recomputed = dict(enumerate(self._recompute()))
        return self.recomputed.pop(index)

    def forward_done(self) -> None:
        """Note the inputs' versions: autograd refuses a backward pass through a saved tensor
        changed in place since it was saved, and the inputs kept here get the same check."""
        self.versions = [value._version for value in self._tensor_inputs()]

    def _tensor_inputs(self) -> list[torch.Tensor]:
        return [value for value in (*self.args, *self.kwargs.values()) if torch.is_tensor(value)]

    def _recompute(self) -> list[torch.Tensor]:
        if [value._version for value in self._tensor_inputs()] != self.versions:
            raise RuntimeError("an input of a recomputed block was modified in place before the backward pass")
        saved: list[torch.Tensor] = []

        def keep(tensor: torch.Tensor) -> None:
            # Detached, and nothing left in the recomputed graph: a saved output that kept its
            # grad_fn would make a reference cycle that only the garbage collector frees.
            saved.append(tensor.detach())
            if len(saved) == len(self.saved):
                raise _AllSaved

        enabled, dtype = self.autocast
        try:
            with (
                torch.enable_grad(),
                torch.autocast(self.device, dtype=dtype, enabled=enabled),
                self.buffers,
                torch.autograd.graph.saved_tensors_hooks(keep, lambda _: None),
            ):
                self.forward(*self.args, **self.kwargs)
        except _AllSaved:
            pass
        if [(tensor.shape, tensor.dtype) for tensor in saved] != self.saved:
            raise RuntimeError(
                f"a recomputed block saved {len(saved)} tensors for backward that differ from the "
                f"{len(self.saved)} its forward saved"
            )
        return saved


def _detached(value):
    return value.detach().requires_grad_(value.requires_grad) if torch.is_tensor(value) else value


def _recomputed_forward(self: nn.Module, *args, **kwargs):
    forward = functools.partial(type(self).forward, self)
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    # Looked up on each call: moving a module to another device replaces its buffers.
    buffers = list(self.buffers())
    with torch.no_grad():
        first_pass = [buffer.clone() for buffer in buffers]
    recomputation = _Recomputation(forward, args, kwargs, _FirstPassBuffers(buffers, first_pass))
    with torch.autograd.graph.saved_tensors_hooks(recomputation.pack, recomputation.unpack):
        output = forward(*args, **kwargs)
    recomputation.forward_done()
    return output


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
