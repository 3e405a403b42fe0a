"""Make docs/depth_example.png: a synthetic test frame, its predicted disparity, the point cloud that
``dagan depth --ply`` writes seen from the side, and the same view of the ground truth.

Run: python scripts/depth_example.py --weights RUN_DIR --data SYNTH_DIR [--out docs/depth_example.png]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from dagan.io.colormap import colorize_disparity
from dagan.io.image import read_image, write_png
from dagan.io.video import iter_frames, probe_video
from dagan.pipelines.depth import depth_files, pixel_intrinsics, point_cloud


def side_view(points: np.ndarray, colours: np.ndarray, size: int, yaw_degrees: float = 50.0) -> np.ndarray:
    """Splat a point cloud, turned about its centre, into an image (z-buffered, orthographic)."""
    centre = np.median(points, axis=0)
    angle = np.deg2rad(yaw_degrees)
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    turned = (points - centre) @ rotation.T
    span = np.percentile(np.abs(turned[:, :2]), 98) * 1.1 + 1e-6
    xy = ((turned[:, :2] / span + 1) / 2 * (size - 1)).round().astype(int)
    image = np.ones((size, size, 3), np.float32)
    depth = np.full((size, size), np.inf)
    for (x, y), z, colour in zip(xy, turned[:, 2], colours, strict=True):
        for dy in (0, 1):  # 2x2 splats, so the surface reads as a surface
            for dx in (0, 1):
                u, v = x + dx, y + dy
                if 0 <= u < size and 0 <= v < size and z < depth[v, u]:
                    depth[v, u] = z
                    image[v, u] = colour / 255.0
    return image


def main() -> None:
    """Build the figure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/depth_example.png"))
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    clip = sorted((args.data / "test").glob("*.mp4"))[0]
    frame = list(iter_frames(probe_video(clip)))[10]
    truth = np.load(clip.with_suffix(".npz"))
    with tempfile.TemporaryDirectory() as tmp:
        write_png(Path(tmp) / "frame.png", frame)
        depth_files(args.weights, Path(tmp) / "frame.png", Path(tmp) / "out", ply=False, size=args.size, quiet=True)
        predicted = np.load(Path(tmp) / "out" / "frame_depth.npy")
        disparity_picture = read_image(Path(tmp) / "out" / "frame_disp.png")
    image = frame
    mask = truth["head_mask"][10]
    gt = truth["depth"][10].astype(np.float32)
    k = pixel_intrinsics(args.weights, args.size, None)
    scale = np.median(gt[mask]) / np.median(predicted[mask])  # monocular depth: scale from the median
    ours = point_cloud(np.where(mask, predicted * scale, 0), image, k)
    reference = point_cloud(gt, image, np.array(truth["intrinsics"]))
    keep = mask.ravel()
    panels = [
        image,
        disparity_picture,
        side_view(ours[0][keep], ours[1][keep], args.size),
        side_view(reference[0][keep], reference[1][keep], args.size),
        colorize_disparity(np.where(gt > 0, 1 / np.maximum(gt, 1e-3), 0)),
    ]
    write_png(args.out, np.concatenate(panels, axis=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
