"""LSE-D and LSE-C (lip-sync error distance and confidence) as syncnet_python's ``evaluate`` computes them.

Video at 25 fps and 16 kHz mono audio: each 5-frame window (frames resized to 224x224 by
``cv2.resize`` itself, 8-bit in and out as the reference does, fed as BGR on 0-255) and its 20 MFCC
steps (4 per frame) are embedded by SyncNet; for audio shifts of -15..15 windows the mean
embedding distance is taken over the video. LSE-D is the smallest mean distance, LSE-C the median
minus that minimum, and the AV offset is where the minimum lies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dagan.errors import DaganError
from dagan.metrics.audio import mfcc
from dagan.nn.syncnet import SyncNet

FPS, SAMPLE_RATE = 25, 16000
WINDOW = 5  # video frames per embedding
MFCC_PER_FRAME = 4
MISSING_OPENCV = "the lip-sync metrics resize frames with OpenCV, as syncnet_python does: pip install 'dagan[eval]'"


class MissingOpenCVError(DaganError):
    """Frames need resizing, and OpenCV, the reference's own resize, is not installed."""


@dataclass
class LipSyncScore:
    """The SyncNet scores of one video."""

    lse_d: float
    lse_c: float
    offset: int
    mean_distances: np.ndarray  # (2 * vshift + 1,)


def resize_like_syncnet(frames_rgb: np.ndarray, size: int = 224) -> np.ndarray:
    """(T, H, W, 3) uint8 frames at ``size`` x ``size`` exactly as syncnet_python gets them.

    The reference calls ``cv2.resize`` (bilinear, OpenCV's 11-bit fixed-point weights, rounded back
    to 8 bits) on every frame; a float resize that never rounds differs in LSE by up to 5e-3, so
    OpenCV itself is called (``pip install 'dagan[eval]'``).
    """
    if frames_rgb.shape[1:3] == (size, size):
        return frames_rgb
    try:
        import cv2
    except ImportError:
        raise MissingOpenCVError(MISSING_OPENCV) from None
    return np.stack([cv2.resize(np.ascontiguousarray(frame), (size, size)) for frame in frames_rgb])


def _lip_input(frames_rgb: np.ndarray, size: int = 224) -> torch.Tensor:
    """(T, H, W, 3) uint8 RGB to (1, 3, T, size, size) float BGR on 0-255."""
    resized = resize_like_syncnet(frames_rgb, size)
    video = torch.from_numpy(np.ascontiguousarray(resized[..., ::-1])).permute(0, 3, 1, 2).float()
    return video.permute(1, 0, 2, 3).unsqueeze(0)


@torch.no_grad()
def lip_sync_score(
    network: SyncNet,
    frames_rgb: np.ndarray,
    audio_int16: np.ndarray,
    vshift: int = 15,
    batch_size: int = 20,
    device: torch.device | str = "cpu",
) -> LipSyncScore:
    """LSE-D, LSE-C and the AV offset of ``frames_rgb`` (T, H, W, 3 uint8) with 16 kHz mono ``audio_int16``."""
    network = network.eval().to(device)
    video = _lip_input(frames_rgb)
    cepstra = torch.from_numpy(mfcc(audio_int16, SAMPLE_RATE).T.copy()).float()[None, None]  # (1, 1, 13, N)
    length = min(video.shape[2], math.floor(len(audio_int16) / (SAMPLE_RATE // FPS)))
    windows = length - WINDOW
    if windows < 1:
        raise ValueError(f"lip sync needs more than {WINDOW} frames with audio, got {length}")
    lips, voice = [], []
    for start in range(0, windows, batch_size):
        picks = range(start, min(windows, start + batch_size))
        lip_batch = torch.cat([video[:, :, t : t + WINDOW] for t in picks]).to(device)
        audio_batch = torch.cat(
            [cepstra[..., t * MFCC_PER_FRAME : t * MFCC_PER_FRAME + WINDOW * MFCC_PER_FRAME] for t in picks]
        ).to(device)
        lips.append(network.forward_lips(lip_batch).cpu())
        voice.append(network.forward_audio(audio_batch).cpu())
    lip_features, audio_features = torch.cat(lips), torch.cat(voice)
    shifts = 2 * vshift + 1
    padded = F.pad(audio_features, (0, 0, vshift, vshift))
    distances = torch.stack(
        [
            F.pairwise_distance(lip_features[[i]].repeat(shifts, 1), padded[i : i + shifts])
            for i in range(len(lip_features))
        ],
        dim=1,
    )
    mean = distances.mean(dim=1)
    smallest, index = torch.min(mean, 0)
    return LipSyncScore(
        lse_d=float(smallest),
        lse_c=float(torch.median(mean) - smallest),
        offset=int(vshift - index),
        mean_distances=mean.numpy(),
    )
