"""How strongly does a dagan synth clip pin the face's depth? (docs/depth.md, "Why the relief drifts")

For target frames and their neighbours ``--stride`` frames away, minimise the photometric loss of
the face pixels over the camera motion, once with the true depth and once with its relief scaled
about the median, and print both losses. A small margin means the videos barely tell the true
relief from an exaggerated one.

    python scripts/depth_ambiguity.py [--relief 2.0] [--shake-z 0.6] [--clips 3]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from dagan.data import synth
from dagan.geometry import axisangle_to_matrix, backproject, intrinsics_from_fractions, project
from dagan.pipelines.depth_losses import photometric_error


def best_loss(
    depth: torch.Tensor, target: torch.Tensor, source: torch.Tensor, face: torch.Tensor, k: torch.Tensor,
    rotation: torch.Tensor, translation: torch.Tensor, iterations: int,
) -> float:  # fmt: skip
    """Lowest face-pixel photometric loss over camera motions near (rotation, translation)."""
    size = depth.shape[-1]
    points = backproject(depth.view(1, 1, size, size), k)
    turn = torch.zeros(1, 3, requires_grad=True)
    shift = torch.zeros(1, 3, requires_grad=True)
    optimizer = torch.optim.Adam([turn, shift], lr=3e-3)
    best = float("inf")
    for _ in range(iterations):
        r = axisangle_to_matrix(turn) @ rotation
        transform = torch.eye(4).unsqueeze(0).clone()
        transform = torch.cat([torch.cat([r, (translation + shift[0]).view(1, 3, 1)], 2), transform[:, 3:]], 1)
        warped = F.grid_sample(
            source, project(points, k, transform, size, size), padding_mode="border", align_corners=True
        )
        loss = photometric_error(warped, target)[0, 0][face].mean()
        best = min(best, loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return best


def main() -> None:
    """Print the mean best loss with the true depth and with the scaled relief."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relief", type=float, default=2.0, help="relief scale of the wrong depth")
    parser.add_argument("--shake-z", type=float, default=synth.CAMERA_SHAKE[2], help="to-and-fro camera shake")
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    synth.CAMERA_SHAKE = (*synth.CAMERA_SHAKE[:2], args.shake_z)
    torch.manual_seed(0)
    rng = np.random.default_rng(args.seed)
    size = args.size
    # The renderer's pixel centres sit at i + 0.5: its principal point is half a pixel before size / 2.
    centre = (size / 2 - 0.5) / size
    losses: dict[float, list[float]] = {1.0: [], args.relief: []}
    for _ in range(args.clips):
        identity, motion = synth.random_identity(rng), synth.random_motion(rng, 32)
        clip = synth.render_clip(identity, motion, size=size)
        frames = torch.tensor(clip["frames"]).permute(0, 3, 1, 2).float() / 255
        k = intrinsics_from_fractions((synth.FOCAL, synth.FOCAL, centre, centre), size, size, frames)
        angles = (torch.tensor(getattr(motion, a), dtype=torch.float32) for a in ("yaw", "pitch", "roll"))
        rotations = synth.rotation_matrices(*angles)
        centres = torch.tensor(motion.translation, dtype=torch.float32) + torch.tensor([0.0, 0.15, synth.HEAD_DISTANCE])
        scales = torch.tensor(motion.scale, dtype=torch.float32)
        flip = torch.diag(torch.tensor([1.0, -1.0, 1.0]))  # the renderer's y points up, image rows down
        for t in range(4, 28, 6):
            depth = torch.tensor(clip["depth"][t])
            face = torch.tensor(clip["face_mask"][t])
            median = depth[face].median()
            for relief in losses:
                scaled = torch.where(depth > 0, median + relief * (depth - median), torch.full_like(depth, 50.0))
                total = 0.0
                for s in (t - args.stride, t + args.stride):
                    # True head motion from frame t to s (a similarity; the image sees it as rigid).
                    rotation = rotations[s] @ rotations[t].T * (scales[s] / scales[t])
                    translation = centres[s] - rotation @ centres[t]
                    rotation, translation = flip @ rotation @ flip, flip @ translation
                    total += best_loss(scaled, frames[t : t + 1], frames[s : s + 1], face, k, rotation, translation,
                                       args.iterations)  # fmt: skip
                losses[relief].append(total / 2)
    true, wrong = np.mean(losses[1.0]), np.mean(losses[args.relief])
    print(f"shake z {args.shake_z}: loss with true depth {true:.5f}, relief x{args.relief} {wrong:.5f}, "
          f"margin {100 * (wrong - true) / true:.1f}%")  # fmt: skip


if __name__ == "__main__":
    main()
