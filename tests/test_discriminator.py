"""The discriminator block's in-place leaky ReLU changes no value and no gradient."""

from __future__ import annotations

import pytest
import torch

from dagan.nn.discriminator import DiscriminatorBlock

from .original_blocks import original_discriminator_block


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
