"""Shared fixtures: the reference fixtures in ../shared (skipped when absent) and tiny models."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dagan.config import (
    Config,
    DataConfig,
    DenseMotionConfig,
    DepthConfig,
    GeneratorConfig,
    KeypointDetectorConfig,
    ModelConfig,
    config_to_dict,
)
from dagan.io.checkpoint import write_depth_directory, write_original_checkpoint
from dagan.nn import KeypointDetector
from dagan.nn.face_depth import FaceDepthNetwork
from dagan.pipelines.networks import build_generator

from .random_weights import randomise_

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"
DATA = SHARED / "data"
GOLDEN_ANIMATE = REFERENCE / "golden" / "animate_relative_adapt.npz"

needs_shared = pytest.mark.skipif(
    not (REFERENCE / "weights.py").is_file(),
    reason=f"reference fixtures not found at {SHARED} (they sit beside the checkout in CI)",
)


@pytest.fixture(scope="session")
def reference():
    """The reference ``weights.py`` module: ``load_manifest`` and ``make_state_dict``."""
    if not (REFERENCE / "weights.py").is_file():
        pytest.skip(f"reference fixtures not found at {REFERENCE}")
    spec = importlib.util.spec_from_file_location("dagan_reference_weights", REFERENCE / "weights.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def golden():
    """Arrays of ``animate_relative_adapt.npz`` and its parsed ``meta``."""
    if not GOLDEN_ANIMATE.is_file():
        pytest.skip(f"golden file not found at {GOLDEN_ANIMATE}")
    z = np.load(GOLDEN_ANIMATE)
    arrays = {k: z[k] for k in z.files if k != "meta"}
    arrays["meta"] = json.loads(str(z["meta"]))
    return arrays


@pytest.fixture(scope="session")
def golden_state_dicts(reference, golden):
    """The exact weights each network of the golden used."""
    seeds = golden["meta"]["weights_seed"]
    return {name: reference.make_state_dict(reference.load_manifest(name), seed) for name, seed in seeds.items()}


@pytest.fixture(scope="session")
def golden_files(tmp_path_factory, golden_state_dicts, golden):
    """Golden weights in the original on-disk formats, and the golden driving frames as PNGs."""
    root = tmp_path_factory.mktemp("golden_files")
    prefixed = {
        "generator": {f"module.{k}": v for k, v in golden_state_dicts["generator"].items()},
        "kp_detector": {f"module.{k}": v for k, v in golden_state_dicts["kp_detector"].items()},
    }
    write_original_checkpoint(root / "DaGAN_golden.pth.tar", prefixed, {"epoch": 7})
    depth_groups = {
        "depth_encoder": golden_state_dicts["depth_encoder_resnet18"],
        "depth_decoder": golden_state_dicts["depth_decoder_resnet18"],
    }
    write_depth_directory(root / "weights_19", depth_groups, {"height": 256, "width": 256, "use_stereo": False})
    frames = root / "frames"
    frames.mkdir()
    for i, frame in enumerate(golden["driving"]):
        image = np.round(frame.transpose(1, 2, 0) * 255).astype(np.uint8)
        Image.fromarray(image).save(frames / f"{i:04d}.png")
    return {
        "checkpoint": root / "DaGAN_golden.pth.tar",
        "depth": root / "weights_19",
        "frames": frames,
        "root": root,
    }


def tiny_model_config(variant: str = "depth_aware", num_kp: int = 5) -> ModelConfig:
    """A model small enough for fast CPU tests, same architecture family as vox-adv-256."""
    kp = KeypointDetectorConfig(num_kp=num_kp, block_expansion=8, max_features=32, num_blocks=3)
    dense = DenseMotionConfig(num_kp=num_kp, block_expansion=8, max_features=32, num_blocks=3)
    gen = GeneratorConfig(
        variant=variant,
        block_expansion=8,
        max_features=32,
        num_down_blocks=2,
        num_bottleneck_blocks=1,
        dense_motion=dense,
    )
    return dataclasses.replace(ModelConfig(), kp_detector=kp, generator=gen, depth=DepthConfig(num_layers=18))


def write_aligned_training_checkpoint(path: Path, seed: int = 0, blend_deformed: bool = False) -> Path:
    """A tiny model saved as ``dagan train`` saves it, with the aligned warp convention and 64x64 frames
    (and, with ``blend_deformed``, the demo model's blended output)."""
    model = tiny_model_config()
    dense = dataclasses.replace(model.generator.dense_motion, align_corners=True)
    generator = dataclasses.replace(model.generator, dense_motion=dense, blend_deformed=blend_deformed)
    model = dataclasses.replace(model, generator=generator)
    config = Config(model=model, data=DataConfig(frame_shape=(64, 64, 3)))
    groups = make_tiny_weights(seed)
    if blend_deformed:
        net = build_generator(generator)
        randomise_(net, torch.Generator().manual_seed(seed))
        groups["generator"] = net.state_dict()
    torch.save(
        {"generator": groups["generator"], "kp_detector": groups["kp_detector"], "config": config_to_dict(config)}, path
    )
    return path


def make_tiny_weights(
    seed: int = 0, variant: str = "depth_aware", num_kp: int = 5
) -> dict[str, dict[str, torch.Tensor]]:
    """Deterministic random weights for the tiny model and a ResNet-18 depth network."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    config = tiny_model_config(variant, num_kp)
    nets = {
        "kp_detector": KeypointDetector(config.kp_detector),
        "generator": build_generator(config.generator),
    }
    depth = FaceDepthNetwork(config.depth)
    for net in (*nets.values(), depth):
        randomise_(net, gen)
    groups = {name: net.state_dict() for name, net in nets.items()}
    groups["depth_encoder"] = depth.encoder.state_dict()
    groups["depth_decoder"] = depth.decoder.state_dict()
    return groups


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory):
    """A tiny DaGAN checkpoint (original format), its depth folder, a source image and a driving clip."""
    root = tmp_path_factory.mktemp("tiny")
    groups = make_tiny_weights()
    write_original_checkpoint(root / "tiny.pth.tar", {k: groups[k] for k in ("generator", "kp_detector")})
    write_depth_directory(root / "depth", {k: groups[k] for k in ("depth_encoder", "depth_decoder")})
    rng = np.random.default_rng(0)
    source = (rng.random((96, 80, 3)) * 255).astype(np.uint8)
    Image.fromarray(source).save(root / "source.png")
    clip = make_clip(root / "driving.mp4", frames=6, size=64)
    return {
        "checkpoint": root / "tiny.pth.tar",
        "depth": root / "depth",
        "source": root / "source.png",
        "driving": clip,
    }


def make_clip(
    path: Path, frames: int = 6, size: int = 64, fps: int = 25, audio: bool = False, codec: str = "libx264"
) -> Path:
    """Write a small moving-pattern clip (optionally with a sine audio track)."""
    import av

    yy, xx = np.mgrid[0:size, 0:size]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p" if codec != "gif" else "rgb8"
        audio_stream = None
        if audio:
            audio_stream = container.add_stream("aac", rate=16000)
            audio_stream.layout = "mono"
        if frames == 0:
            container.start_encoding()  # a valid file whose video stream has no frames
        for i in range(frames):
            image = np.stack([(xx * 4 + i * 9) % 256, (yy * 3 + i * 5) % 256, ((xx + yy) * 2) % 256], axis=-1).astype(
                np.uint8
            )
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if audio_stream is not None:
            samples = int(16000 * frames / fps)
            t = np.arange(samples) / 16000
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in audio_stream.encode(frame):
                container.mux(packet)
            for packet in audio_stream.encode(None):
                container.mux(packet)
    return path
