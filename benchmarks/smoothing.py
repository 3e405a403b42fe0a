"""Keypoint jitter and lag of ``dagan animate --smooth S`` on a driving video, against S.

Jitter is the mean norm of the keypoints' second difference over time (pixels at 256x256), the
shake a still photo inherits. Lag is the delay, in frames, at which the filtered track best
matches the raw one (a parabola through the best integer delay and its neighbours). Both are
measured in the same run for every S, S = 0 being the unfiltered track.

    .venv/bin/python benchmarks/smoothing.py [--driving VIDEO] [--checkpoint CKPT --depth-weights DIR] [--plot PNG]

Without weights it uses the bundled demo model; the default video is ../shared/data/driving.mp4.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from dagan.assets import DEMO_MODEL
from dagan.io.image import write_png
from dagan.io.plots import line_chart_image
from dagan.io.video import iter_frames, probe_video
from dagan.motion import KeypointSmoother
from dagan.nn.common import Keypoints
from dagan.pipelines.animate import Animator

STRENGTHS = (0, 0.5, 1, 2, 3, 4, 6, 8)
#: Keypoints live in [-1, 1]: half the frame is one unit.
PIXELS_PER_UNIT = 128


def keypoint_track(animator: Animator, video: Path, batch: int = 16) -> Keypoints:
    """The driving keypoints of every frame of ``video``, (T, K, 2) and (T, K, 2, 2)."""
    from dagan.io.image import resize_frame

    frames = [resize_frame(frame, animator.size) for frame in iter_frames(probe_video(video))]
    values, jacobians = [], []
    for start in range(0, len(frames), batch):
        _, kp = animator.depth_and_keypoints(animator._to_tensor(frames[start : start + batch]))
        values.append(kp.value)
        jacobians.append(kp.jacobian)
    jacobian = torch.cat(jacobians) if jacobians[0] is not None else None
    return Keypoints(torch.cat(values), jacobian)


def jitter(track: np.ndarray) -> float:
    """Mean norm of the second difference, in pixels at 256x256."""
    second = track[2:] - 2 * track[1:-1] + track[:-2]
    return float(np.linalg.norm(second, axis=-1).mean() * PIXELS_PER_UNIT)


def lag(raw: np.ndarray, filtered: np.ndarray, most: int = 20) -> float:
    """The delay (frames, sub-frame by a parabola) that best aligns ``filtered`` with ``raw``."""
    errors = np.array([np.abs(filtered[k:] - raw[: len(raw) - k]).mean() for k in range(most + 1)])
    best = int(errors.argmin())
    if 0 < best < most:
        left, centre, right = errors[best - 1 : best + 2]
        curvature = left - 2 * centre + right
        return best + (0.5 * (left - right) / curvature if curvature > 0 else 0.0)
    return float(best)


def main() -> None:
    """Print the table (and draw it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--driving", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/driving.mp4")
    parser.add_argument("--checkpoint", type=Path, default=DEMO_MODEL)
    parser.add_argument("--depth-weights", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="also draw jitter and lag against S here")
    args = parser.parse_args()
    if not args.driving.is_file():
        raise SystemExit(f"no driving video at {args.driving} (pass --driving)")
    animator = Animator.from_checkpoint(args.checkpoint, args.depth_weights, device="cpu")
    fps = float(probe_video(args.driving).fps)
    track = keypoint_track(animator, args.driving)
    raw = track.value.numpy()
    print(
        f"{args.driving.name}: {len(raw)} frames at {fps:g} fps, {raw.shape[1]} keypoints; model {args.checkpoint.name}"
    )
    print(f"{'S':>5} {'jitter px':>10} {'x raw':>7} {'lag frames':>11}")
    rows = []
    for strength in STRENGTHS:
        smoothed = KeypointSmoother(strength, fps)(track).value.numpy()
        rows.append((strength, jitter(smoothed), lag(raw, smoothed)))
        print(f"{strength:>5g} {rows[-1][1]:>10.3f} {rows[-1][1] / rows[0][1]:>7.2f} {rows[-1][2]:>11.2f}")
    if args.plot:
        strengths = [row[0] for row in rows]
        chart = line_chart_image(
            strengths,
            {"jitter / raw": [row[1] / rows[0][1] for row in rows], "lag (frames) / 4": [row[2] / 4 for row in rows]},
            f"--smooth S on {args.driving.name}: jitter (relative) and lag (frames / 4)",
        )
        write_png(args.plot, chart)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
