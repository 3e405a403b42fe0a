"""The depth-aware attention equals the original's explicit formulation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dagan.nn.attention import DepthAwareAttention


def _explicit(module: DepthAwareAttention, depth_features: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """bmm + softmax over the last axis, no 1/sqrt(d) scale, as the original computes it."""
    b, c, h, w = features.shape
    query = F.relu(module.query_conv(depth_features)).view(depth_features.shape[0], -1, h * w).permute(0, 2, 1)
    key = F.relu(module.key_conv(features)).view(b, -1, h * w)
    energy = torch.bmm(query.expand(b, -1, -1), key)
    attention = torch.softmax(energy, dim=-1)
    value = F.relu(module.value_conv(features)).view(b, -1, h * w)
    out = torch.bmm(value, attention.permute(0, 2, 1)).view(b, c, h, w)
    return module.gamma * out + features


@pytest.mark.parametrize("mode", ["auto", "sdpa", "matrix"])
def test_every_mode_and_chunking_equals_explicit_attention(mode):
    torch.manual_seed(0)
    module = DepthAwareAttention(64)
    module.mode = mode
    with torch.no_grad():
        module.gamma.fill_(0.7)
    depth_features = torch.randn(1, 64, 12, 10)
    features = torch.randn(3, 64, 12, 10)
    expected = _explicit(module, depth_features, features)
    for chunk in (7, 32, 1024):  # uneven chunks, several chunks, one chunk
        module.query_chunk = chunk
        assert torch.allclose(module(depth_features, features), expected, atol=1e-5, rtol=1e-5)


def test_attention_has_gradients_for_training():
    torch.manual_seed(1)
    module = DepthAwareAttention(16)
    module.query_chunk = 5
    with torch.no_grad():
        module.gamma.fill_(0.5)  # at its initial 0 the attention branch gets no gradient
    depth_features = torch.randn(2, 16, 4, 4, requires_grad=True)
    features = torch.randn(2, 16, 4, 4, requires_grad=True)
    module(depth_features, features).square().sum().backward()
    assert depth_features.grad.abs().sum() > 0 and module.query_conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_output_keeps_the_layout_of_the_features(layout):
    """The attended map is a transposed (channels-last) view; an NCHW network must stay NCHW (its
    convolution backward on CPU is twice as fast as channels-last) and a channels-last one channels-last."""
    module = DepthAwareAttention(16)
    features = torch.randn(2, 16, 6, 5).contiguous(memory_format=layout)
    out = module(torch.randn(1, 16, 6, 5).contiguous(memory_format=layout), features)
    assert out.is_contiguous(memory_format=layout)
    assert out.is_contiguous() == (layout == torch.contiguous_format)
