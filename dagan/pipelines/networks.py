"""Building networks from a config or from weight files."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dagan.config import GeneratorConfig, ModelConfig
from dagan.errors import DaganError
from dagan.io.checkpoint import (
    DEPTH_CLASSIFIER_KEYS,
    DEPTH_GROUPS,
    WeightFile,
    infer_depth_config,
    infer_model_config,
    load_strict,
    read_dagan_checkpoint,
    read_depth_weights,
)
from dagan.nn import DepthAwareGenerator, KeypointDetector, SPADEDepthAwareGenerator
from dagan.nn.face_depth import FaceDepthNetwork


def build_generator(config: GeneratorConfig) -> DepthAwareGenerator | SPADEDepthAwareGenerator:
    """The generator class the config's ``variant`` names."""
    if config.variant == "spade":
        if config.blend_deformed:
            raise DaganError(
                "generator.blend_deformed is for the plain decoder; the SPADE decoder already sees the warped image"
            )
        return SPADEDepthAwareGenerator(config)
    return DepthAwareGenerator(config)


#: Frame size of checkpoints that do not record one: the published VoxCeleb models.
DEFAULT_FRAME_SIZE = 256


@dataclass
class AnimationNetworks:
    """The three networks animation needs, in eval mode on one device."""

    kp_detector: KeypointDetector
    generator: nn.Module
    depth: FaceDepthNetwork
    config: ModelConfig
    #: The frame size the model was trained at (recorded by dagan train; the published models: 256).
    frame_size: int = DEFAULT_FRAME_SIZE

    def to(self, device: torch.device) -> AnimationNetworks:
        """Move every network to ``device``."""
        for net in (self.kp_detector, self.generator, self.depth):
            net.to(device)
        return self


def load_depth_network(weights: WeightFile) -> FaceDepthNetwork:
    """Build the depth network the tensors describe and load them strictly."""
    depth = FaceDepthNetwork(infer_depth_config(weights))
    encoder_state = weights.groups["depth_encoder"]
    if not any(key in encoder_state for key in DEPTH_CLASSIFIER_KEYS):
        # Files from `dagan convert --inference-only` leave the unused classifier out.
        own = depth.encoder.state_dict()
        encoder_state = {**encoder_state, **{key: own[key] for key in DEPTH_CLASSIFIER_KEYS}}
    load_strict(depth.encoder, encoder_state, "the depth encoder", weights.source)
    load_strict(depth.decoder, weights.groups["depth_decoder"], "the depth decoder", weights.source)
    return depth.eval()


def load_dagan_networks(weights: WeightFile) -> tuple[ModelConfig, KeypointDetector, nn.Module]:
    """Build the keypoint detector and generator the tensors describe, and load them strictly."""
    missing = [g for g in ("generator", "kp_detector") if g not in weights.groups]
    if missing:
        raise DaganError(f"checkpoint {weights.source} lacks the {' and '.join(missing)} tensors")
    config = infer_model_config(weights)
    kp_detector = KeypointDetector(config.kp_detector)
    load_strict(kp_detector, weights.groups["kp_detector"], "kp_detector", weights.source)
    generator = build_generator(config.generator)
    load_strict(generator, weights.groups["generator"], "generator", weights.source)
    return config, kp_detector.eval(), generator.eval()


def load_animation_networks(checkpoint: str | Path, depth_weights: str | Path | None = None) -> AnimationNetworks:
    """Load a DaGAN checkpoint and face-depth weights; the architecture is read from the tensors.

    ``depth_weights`` may be omitted when the checkpoint is a ``.safetensors`` that holds them.
    """
    weights = read_dagan_checkpoint(checkpoint)
    config, kp_detector, generator = load_dagan_networks(weights)
    if depth_weights is not None:
        depth_file = read_depth_weights(depth_weights)
    elif all(g in weights.groups for g in DEPTH_GROUPS):
        depth_file = WeightFile({g: weights.groups[g] for g in DEPTH_GROUPS}, weights.metadata, weights.source)
    else:
        raise DaganError(f"checkpoint {checkpoint} holds no depth network: pass --depth-weights DIR")
    depth = load_depth_network(depth_file)
    size = weights.metadata.get("frame_size", DEFAULT_FRAME_SIZE)
    if not isinstance(size, int) or size < 16:
        raise DaganError(f"checkpoint {checkpoint} records an invalid frame size {size!r}")
    return AnimationNetworks(kp_detector, generator, depth, dataclasses.replace(config, depth=depth.config), size)


def load_trained_depth(directory: str | Path) -> FaceDepthNetwork:
    """The depth network in a ``train-depth`` run folder (or any ``encoder.pth`` + ``depth.pth`` folder)."""
    return load_depth_network(read_depth_weights(directory))
