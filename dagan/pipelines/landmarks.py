"""``dagan train-landmarks``: the synthetic-head landmark network that AKD uses on ``dagan synth`` sets."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dagan.errors import DaganError
from dagan.io.arrays import read_arrays
from dagan.io.atomic import atomic_output, check_outputs
from dagan.io.checkpoint import load_torch_file
from dagan.io.image import resize_frame, to_uint8
from dagan.io.video import iter_frames, probe_video
from dagan.nn.landmark_net import LandmarkNet
from dagan.options import LandmarkTrainOptions
from dagan.pipelines.optim import Adam


@dataclass
class LandmarkTrainResult:
    """The trained network and its error on the test identities."""

    network: LandmarkNet
    test_error: float  # mean absolute landmark error, pixels at the training size
    seconds: float


def load_clips(folder: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every frame (N, S, S, 3) uint8 of ``folder``'s clips at ``size``, and its landmarks (N, L, 2) in pixels."""
    frames, landmarks = [], []
    for clip in sorted(folder.glob("*.mp4")):
        truth = clip.with_suffix(".npz")
        if not truth.is_file():
            continue
        points = read_arrays(truth, ("landmarks",))["landmarks"]
        decoded = list(iter_frames(probe_video(clip)))
        # Kept as 8-bit pixels: a few thousand frames, a quarter of the memory of float32.
        frames.extend(to_uint8(resize_frame(frame, size)) for frame in decoded)
        landmarks.append(points[: len(decoded)] * (size / decoded[0].shape[1]))
    if not frames:
        raise DaganError(f"{folder} has no clips with ground-truth landmarks (NAME.mp4 + NAME.npz from dagan synth)")
    return np.stack(frames), np.concatenate(landmarks).astype(np.float32)


def _batch(frames: np.ndarray, index: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames[index]).permute(0, 3, 1, 2).float() / 255


def _degrade(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random blur and brightness: generated frames are softer than rendered ones."""
    b = images.shape[0]
    blurred = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, 1)
    mix = torch.rand(b, 1, 1, 1, generator=generator)
    gain = 1 + 0.2 * (torch.rand(b, 1, 1, 1, generator=generator) - 0.5)
    return ((1 - mix) * images + mix * blurred) * gain


@torch.no_grad()
def landmark_error(network: LandmarkNet, frames: np.ndarray, landmarks: np.ndarray, batch_size: int = 64) -> float:
    """Mean absolute error in pixels of ``network`` on ``frames``."""
    network.eval()
    errors = []
    for start in range(0, len(frames), batch_size):
        index = np.arange(start, min(start + batch_size, len(frames)))
        errors.append((network(_batch(frames, index)) - torch.from_numpy(landmarks[index])).abs().mean((1, 2)))
    return float(torch.cat(errors).mean())


def train_landmarks(
    data: str | Path,
    out: str | Path,
    size: int = LandmarkTrainOptions.size,
    steps: int = LandmarkTrainOptions.steps,
    batch_size: int = 32,
    seed: int = LandmarkTrainOptions.seed,
    quiet: bool = LandmarkTrainOptions.quiet,
) -> LandmarkTrainResult:
    """Train on ``data``/train, report the error on ``data``/test, save to ``out`` (a ``.pth``)."""
    started = time.perf_counter()
    data, out = Path(data), Path(out)
    read = [path for part in ("train", "test") if (data / part).is_dir() for path in (data / part).iterdir()]
    check_outputs({"--out": out}, {"--data": [data, *read]})
    train_frames, train_landmarks_ = load_clips(data / "train", size)
    test_frames, test_landmarks = load_clips(data / "test", size)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    network = LandmarkNet(train_landmarks_.shape[1])
    optimizer = Adam(network.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, [int(steps * 0.75)], gamma=0.1)
    network.train()
    for _ in tqdm(range(steps), disable=quiet, file=sys.stderr, desc="train-landmarks", unit="step"):
        index = rng.integers(0, len(train_frames), batch_size)
        images = _degrade(_batch(train_frames, index), generator)
        loss = (network(images) - torch.from_numpy(train_landmarks_[index])).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    error = landmark_error(network, test_frames, test_landmarks)
    with atomic_output(out) as tmp:
        torch.save({"state_dict": network.state_dict(), "num_landmarks": network.num_landmarks, "size": size}, tmp)
    return LandmarkTrainResult(network.eval(), error, time.perf_counter() - started)


def load_landmark_network(path: str | Path) -> tuple[LandmarkNet, int]:
    """The network saved by ``train_landmarks`` and the frame size it was trained at."""
    raw = load_torch_file(path)
    if not isinstance(raw, dict) or "state_dict" not in raw or "num_landmarks" not in raw:
        raise DaganError(f"{path} is not a dagan train-landmarks file")
    network = LandmarkNet(int(raw["num_landmarks"]))
    try:
        network.load_state_dict(raw["state_dict"])
    except (RuntimeError, TypeError) as exc:
        raise DaganError(f"{path}: landmark weights do not fit the network ({str(exc).splitlines()[0]})") from exc
    return network.eval(), int(raw.get("size", 64))
