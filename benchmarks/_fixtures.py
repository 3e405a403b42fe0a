"""Full-size random-weight models and driving clips for benchmarks (no downloads needed)."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from dagan.config import ModelConfig
from dagan.io.checkpoint import write_depth_directory, write_original_checkpoint
from dagan.io.video import Mp4Writer, iter_frames, probe_video
from dagan.nn import KeypointDetector
from dagan.nn.face_depth import FaceDepthNetwork
from dagan.pipelines.networks import build_generator

# The random initialisation and the original's blocks that the tests use live with them; benchmarks share them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.original_blocks import original_discriminator_block, original_kp2gaussian  # noqa: E402, F401
from tests.random_weights import randomise_  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_random_model(root: Path, variant: str = "depth_aware", seed: int = 0) -> tuple[Path, Path]:
    """vox-adv-256 networks (15 keypoints) with deterministic random weights, in the original formats."""
    config = ModelConfig().with_num_kp(15)
    config.generator.variant = variant
    gen = torch.Generator().manual_seed(seed)
    kp = randomise_(KeypointDetector(config.kp_detector), gen)
    generator = randomise_(build_generator(config.generator), gen)
    depth = randomise_(FaceDepthNetwork(config.depth), gen)
    checkpoint = root / "model.pth.tar"
    write_original_checkpoint(checkpoint, {"generator": generator.state_dict(), "kp_detector": kp.state_dict()})
    write_depth_directory(
        root / "depth", {"depth_encoder": depth.encoder.state_dict(), "depth_decoder": depth.decoder.state_dict()}
    )
    return checkpoint, root / "depth"


def original_anti_alias(self, x: torch.Tensor) -> torch.Tensor:
    """The original's AntiAliasInterpolation2d: blur every pixel, then keep every stride-th
    (patched over ``AntiAliasDownsample.forward`` by the plain paths)."""
    out = torch.nn.functional.pad(x, (self.pad_before, self.pad_after, self.pad_before, self.pad_after))
    out = torch.nn.functional.conv2d(out, self.weight, groups=self.groups)
    return out[:, :, :: self.stride, :: self.stride]


def sample_frames() -> list[np.ndarray]:
    """The sample driving video's frames, or a synthetic moving pattern when ../shared is absent."""
    sample = SHARED_DATA / "driving.mp4"
    if sample.is_file():
        return list(iter_frames(probe_video(sample)))
    yy, xx = np.mgrid[0:256, 0:256]
    return [
        np.stack([(xx + 3 * i) % 256, (yy + 2 * i) % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
        for i in range(100)
    ]


def write_looped_clip(path: Path, frames: int) -> Path:
    """A 25 fps H.264 clip of ``frames`` frames, looping the sample."""
    source = sample_frames()
    writer = Mp4Writer(path, Fraction(25))
    for i in range(frames):
        writer.write(source[i % len(source)])
    writer.close()
    return path


def source_image_path(root: Path) -> Path:
    """The sample portrait, or a synthetic one."""
    sample = SHARED_DATA / "src.png"
    if sample.is_file():
        return sample
    from PIL import Image

    rng = np.random.default_rng(0)
    path = root / "source.png"
    Image.fromarray((rng.random((512, 512, 3)) * 255).astype(np.uint8)).save(path)
    return path
