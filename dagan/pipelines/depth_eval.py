"""Depth evaluation on ``dagan synth`` ground truth: per-image median scaling, face pixels, baselines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dagan.data.dataset import list_clips
from dagan.errors import DaganError
from dagan.geometry import MAX_DEPTH, MIN_DEPTH, disp_to_depth
from dagan.io.arrays import read_arrays
from dagan.io.image import resize_frame
from dagan.io.video import iter_frames, probe_video
from dagan.nn.face_depth import FaceDepthNetwork

#: The seed of the untrained baseline network, so that it is the same network in every report.
UNTRAINED_SEED = 0
DEPTH_METRICS = ("abs_rel", "sq_rel", "rmse", "delta_1.25")


def depth_errors(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """abs-rel, sq-rel, RMSE and the share within 1.25x, over matching pixel arrays."""
    ratio = np.maximum(truth / prediction, prediction / truth)
    return {
        "abs_rel": float(np.mean(np.abs(truth - prediction) / truth)),
        "sq_rel": float(np.mean((truth - prediction) ** 2 / truth)),
        "rmse": float(np.sqrt(np.mean((truth - prediction) ** 2))),
        "delta_1.25": float(np.mean(ratio < 1.25)),
    }


def median_scaled(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Scale a prediction so its median matches the truth's (monocular depth has no absolute scale)."""
    return np.clip(prediction * (np.median(truth) / np.median(prediction)), MIN_DEPTH, MAX_DEPTH)


def has_ground_truth(data: str | Path, split: str = "test") -> bool:
    """Whether a split has ``dagan synth`` ground truth (``NAME.npz`` beside its clips)."""
    folder = Path(data) / split
    return folder.is_dir() and any(c.with_suffix(".npz").is_file() for c in list_clips(folder))


#: The masks ``depth_errors`` is scored over, best first.
_MASK_KEYS = ("face_mask", "head_mask")


def _evaluation_masks(truth: dict[str, np.ndarray], depth: np.ndarray) -> np.ndarray:
    """The face pixels of each frame; older ``dagan synth`` data has only the head, or only depth."""
    for key in _MASK_KEYS:
        if key in truth:
            return truth[key].astype(bool)
    return depth > 0


@torch.no_grad()
def evaluate_depth(
    network: FaceDepthNetwork,
    data: str | Path,
    split: str = "test",
    frames_per_clip: int = 8,
    size: int | None = None,
    baselines: bool = True,
) -> dict[str, dict[str, float]]:
    """Depth errors on a ``dagan synth`` split (face pixels, per-image median scaling), with baselines.

    Returns {"model": ..., "constant": ..., "untrained": ...} (only "model" without ``baselines``),
    each mapping metric to its mean.
    """
    clips = [c for c in list_clips(Path(data) / split) if c.with_suffix(".npz").is_file()]
    if not clips:
        raise DaganError(f"no clips with ground truth (NAME.npz, from dagan synth) in {Path(data) / split}")
    device = next(network.parameters()).device
    size = size or network.config.height
    networks = {"model": network.eval()}
    if baselines:
        # A fixed seed makes the untrained baseline the same network in every report.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(UNTRAINED_SEED)
            networks["untrained"] = FaceDepthNetwork(network.config).to(device).eval()
    names = ("model", "constant", "untrained") if baselines else ("model",)
    sums = {name: dict.fromkeys(DEPTH_METRICS, 0.0) for name in names}
    count = 0
    for clip in clips:
        truth = read_arrays(clip.with_suffix(".npz"), ("depth",), _MASK_KEYS)
        gt_depth = truth["depth"].astype(np.float32)
        masks = _evaluation_masks(truth, gt_depth)
        frames = list(iter_frames(probe_video(clip)))
        picks = np.linspace(0, len(frames) - 1, min(frames_per_clip, len(frames))).round().astype(int)
        batch = torch.from_numpy(np.stack([resize_frame(frames[i], size) for i in picks]).transpose(0, 3, 1, 2)).to(
            device
        )
        for name, net in networks.items():
            disp = F.interpolate(net(batch), size=gt_depth.shape[1:], mode="bilinear", align_corners=False)
            depth = disp_to_depth(disp)[:, 0].cpu().numpy()
            for j, index in enumerate(picks):
                mask = masks[index] & (gt_depth[index] > 0)
                errors = depth_errors(median_scaled(depth[j][mask], gt_depth[index][mask]), gt_depth[index][mask])
                for key, value in errors.items():
                    sums[name][key] += value
        for index in picks if baselines else ():
            mask = masks[index] & (gt_depth[index] > 0)
            truth = gt_depth[index][mask]
            for key, value in depth_errors(median_scaled(np.ones_like(truth), truth), truth).items():
                sums["constant"][key] += value
        count += len(picks)
    return {name: {k: v / count for k, v in values.items()} for name, values in sums.items()}
