"""The warps' grid convention (DenseMotionConfig.align_corners): the original's, and the exact one."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dagan.nn.common import Keypoints, deform, make_coordinate_grid
from dagan.pipelines.networks import build_generator

from .conftest import tiny_model_config


def _generator(aligned: bool) -> torch.nn.Module:
    config = tiny_model_config().generator
    config = dataclasses.replace(config, dense_motion=dataclasses.replace(config.dense_motion, align_corners=aligned))
    torch.manual_seed(0)
    return build_generator(config).eval()


def test_an_identity_grid_resized_to_a_smaller_map_is_exact_only_when_aligned():
    features = torch.rand(2, 4, 16, 16)
    identity = make_coordinate_grid(32, 32, features).unsqueeze(0).expand(2, -1, -1, -1)
    assert torch.allclose(deform(features, identity, align_corners=True), features, atol=1e-5)
    assert (deform(features, identity) - features).abs().mean() > 0.02


@pytest.mark.parametrize("aligned", [False, True])
def test_the_same_keypoints_leave_the_source_in_place_only_with_the_aligned_convention(aligned):
    generator = _generator(aligned)
    source = torch.rand(1, 3, 64, 64)
    depth = torch.rand(1, 1, 64, 64)
    value = torch.rand(1, 5, 2) * 1.6 - 0.8
    jacobian = torch.eye(2).expand(1, 5, 2, 2) + 0.1 * torch.randn(1, 5, 2, 2)
    keypoints = Keypoints(value, jacobian)
    with torch.no_grad():
        out = generator(source, keypoints, keypoints, depth, depth)
    error = float((out["deformed"] - source).abs().mean())
    if aligned:
        assert error < 1e-5
    else:  # the original shrinks the source towards its centre and resamples between pixels
        assert error > 0.05
