"""Optimiser updates applied during the backward pass, each as soon as its parameter's gradient is complete.

With the updates after backward, the gradients of the generator and keypoint detector (about
230 MB for vox-adv-256) build up during the generator update's backward pass while activations are
still held, which made that pass a training step's memory peak on CPU. Autograd accumulates
everything a leaf receives before it runs the leaf's accumulation node once, so by the time a
parameter's post-accumulate hook fires, every operation that saved that parameter for backward
has already run: it can be updated in place there and its gradient dropped.

The update is the optimiser's own ``step``, run with the parameter groups narrowed to the one
parameter, so the state (its keys, its layout in ``state_dict``, the learning-rate schedulers'
view of the groups) is exactly what ``optimizer.step()`` after backward would leave, and Adam's
per-element arithmetic gives the same weights to the bit.

Two cases cannot use it, and the trainer steps after backward there: data-parallel training, where
a gradient is only complete once it has been averaged across ranks, and fp16 loss scaling, which
skips a step when any gradient overflowed, which is known only after the whole backward pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch


def _step_one(optimizer: torch.optim.Optimizer, group: dict, parameter: torch.Tensor) -> None:
    """``optimizer.step()`` for ``parameter`` alone, then its gradient is dropped."""
    kept = [g["params"] for g in optimizer.param_groups]
    for g in optimizer.param_groups:
        g["params"] = [parameter] if g is group else []
    try:
        optimizer.step()
    finally:
        for g, params in zip(optimizer.param_groups, kept, strict=True):
            g["params"] = params
    parameter.grad = None


@contextmanager
def stepping_in_backward(optimizers: Sequence[torch.optim.Optimizer]) -> Iterator[None]:
    """While open, each backward pass updates every parameter of ``optimizers`` as its gradient completes."""
    handles = []
    try:
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                for parameter in group["params"]:
                    handles.append(
                        parameter.register_post_accumulate_grad_hook(
                            lambda p, optimizer=optimizer, group=group: _step_one(optimizer, group, p)
                        )
                    )
        yield
    finally:
        for handle in handles:
            handle.remove()
