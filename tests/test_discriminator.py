"""The discriminator block: its in-place leaky ReLU and its frozen path change no value and no gradient."""

from __future__ import annotations

import pytest
import torch

from dagan.nn.discriminator import DiscriminatorBlock

from .original_blocks import original_discriminator_block
from .saved_tensors import saved_bytes


@pytest.mark.parametrize(("norm", "pool"), [(False, True), (True, True), (True, False)])
def test_block_matches_the_out_of_place_formulation(norm, pool):
    torch.manual_seed(0)
    block = DiscriminatorBlock(5, 8, norm=norm, pool=pool, sn=False)
    x = torch.randn(2, 5, 17, 17, requires_grad=True)
    grad_out = None
    results = []
    for forward in (block, lambda t: original_discriminator_block(block, t)):
        block.zero_grad()
        x.grad = None
        out = forward(x)
        grad_out = torch.randn_like(out, generator=torch.Generator().manual_seed(1)) if grad_out is None else grad_out
        out.backward(grad_out)
        results.append((out.detach(), x.grad.clone(), block.conv.weight.grad.clone()))
    for ours, theirs in zip(*results, strict=True):
        assert torch.equal(ours, theirs)
    assert (results[0][0] < 0).any()  # the negative slope was exercised


def _frozen_block(norm: bool, pool: bool) -> DiscriminatorBlock:
    torch.manual_seed(0)
    block = DiscriminatorBlock(5, 8, norm=norm, pool=pool, sn=False)
    if norm:  # an affine that is not the identity, so that its backward is exercised
        torch.nn.init.uniform_(block.norm.weight, 0.5, 1.5)
        torch.nn.init.uniform_(block.norm.bias, -0.5, 0.5)
    return block.requires_grad_(False)


@pytest.mark.parametrize("size", [17, 20, 35])
@pytest.mark.parametrize(("norm", "pool"), [(False, True), (True, True), (True, False)])
def test_frozen_block_keeps_less_for_backward_and_gives_the_same_input_gradient(norm, pool, size):
    block = _frozen_block(norm, pool)
    image = torch.randn(2, 5, size, size)
    results = []
    for forward in (block, block._plain_forward):
        x = image.clone().requires_grad_(True)
        out, kept = saved_bytes(lambda forward=forward, x=x: forward(x))
        grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        out.backward(grad_out)
        results.append((out.detach(), x.grad, kept, out.grad_fn))
    (frozen, frozen_grad, frozen_kept, frozen_fn), (plain, plain_grad, plain_kept, plain_fn) = results
    assert type(frozen_fn).__name__ == "_FrozenBlockBackward" and type(plain_fn).__name__ != type(frozen_fn).__name__
    assert torch.equal(frozen, plain) and torch.equal(frozen_grad, plain_grad)
    assert (frozen < 0).any() and (frozen > 0).any()  # both slopes of the leaky ReLU were exercised
    assert frozen_kept < (0.6 if norm else 0.3) * plain_kept


def test_trainable_or_spectral_norm_blocks_and_inputs_without_gradient_take_the_plain_path():
    x = torch.randn(1, 5, 12, 12, requires_grad=True)
    trainable = DiscriminatorBlock(5, 8, norm=True, pool=True, sn=False)
    trainable(x).sum().backward()
    assert trainable.conv.weight.grad is not None and trainable.norm.weight.grad is not None
    spectral = DiscriminatorBlock(5, 8, norm=True, pool=True, sn=True).requires_grad_(False)
    assert type(spectral(x).grad_fn).__name__ != "_FrozenBlockBackward"
    frozen = _frozen_block(norm=True, pool=True)
    assert frozen(x.detach()).grad_fn is None
