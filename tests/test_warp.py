"""The warps' grid convention (DenseMotionConfig.align_corners): the original's, and the exact one."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dagan.config import DepthConfig, LossWeights, TrainConfig
from dagan.nn import KeypointDetector, MultiScaleDiscriminator
from dagan.nn.common import Keypoints, deform, make_coordinate_grid
from dagan.nn.face_depth import FaceDepthNetwork
from dagan.pipelines.networks import build_generator
from dagan.pipelines.objective import EquivarianceTransform, GeneratorObjective

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


def test_aligned_sparse_motions_of_equal_keypoints_are_all_the_identity():
    generator = _generator(True)
    source = torch.rand(1, 3, 64, 64)
    keypoints = Keypoints(torch.rand(1, 5, 2) * 1.6 - 0.8, torch.eye(2).expand(1, 5, 2, 2).clone())
    with torch.no_grad():
        motion = generator.dense_motion_network(source, keypoints, keypoints)
        downsampled = generator.dense_motion_network.down(source)
    sparse = motion["sparse_deformed"]  # (B, K+1, C, h, w): the background's and each keypoint's
    assert torch.allclose(sparse, downsampled.unsqueeze(1).expand_as(sparse), atol=1e-5)


@pytest.mark.parametrize("aligned", [False, True])
def test_the_equivariance_transform_follows_the_models_convention(aligned):
    model = tiny_model_config()
    train = TrainConfig(
        scales=(1,),
        perceptual_backbone="l1_pyramid",
        loss_weights=LossWeights(generator_gan=0, discriminator_gan=0, feature_matching=(0,), kp_distance=0),
    )
    objective = GeneratorObjective(
        KeypointDetector(model.kp_detector),
        _generator(aligned),
        MultiScaleDiscriminator(dataclasses.replace(model.discriminator, num_kp=5)),
        FaceDepthNetwork(DepthConfig(num_layers=18, height=64, width=64)),
        train,
    )
    source, driving = torch.rand(2, 1, 3, 64, 64)
    identity = EquivarianceTransform(torch.eye(2, 3).unsqueeze(0), None, None)
    generated = objective.generate(source, driving)
    objective.loss_terms(source, driving, generated, identity)
    error = float((generated["transformed_frame"] - driving).abs().mean())
    assert (error < 1e-6) if aligned else (error > 0.01)
