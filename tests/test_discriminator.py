"""The discriminator block's in-place leaky ReLU changes no value and no gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dagan.nn.discriminator import DiscriminatorBlock


def _out_of_place(block: DiscriminatorBlock, x: torch.Tensor) -> torch.Tensor:
    out = block.conv(x)
    if block.norm is not None:
        out = block.norm(out)
    out = F.leaky_relu(out, 0.2)
    return F.avg_pool2d(out, 2) if block.pool else out


@pytest.mark.parametrize(("norm", "pool"), [(False, True), (True, True), (True, False)])
def test_block_matches_the_out_of_place_formulation(norm, pool):
    torch.manual_seed(0)
    block = DiscriminatorBlock(5, 8, norm=norm, pool=pool, sn=False)
    x = torch.randn(2, 5, 17, 17, requires_grad=True)
    grad_out = None
    results = []
    for forward in (block, lambda t: _out_of_place(block, t)):
        block.zero_grad()
        x.grad = None
        out = forward(x)
        grad_out = torch.randn_like(out, generator=torch.Generator().manual_seed(1)) if grad_out is None else grad_out
        out.backward(grad_out)
        results.append((out.detach(), x.grad.clone(), block.conv.weight.grad.clone()))
    for ours, theirs in zip(*results, strict=True):
        assert torch.equal(ours, theirs)
    assert (results[0][0] < 0).any()  # the negative slope was exercised
