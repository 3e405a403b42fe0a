"""The paste-back mask's feather: how visible the seam is, and how much of a moving face it cuts off.

The sample portrait (../shared/data/src.png) is placed in a larger photo and cut as
``animate --crop`` cuts it. An "animated" face is simulated, the same for every feather: the crop
turned by 4 degrees, moved by 3% of its side and 4% brighter, as a generator's frame differs from
its source. For each feather F (in face sizes) the script prints:

- seam: the largest |grad mask| * |animated - photo| over the crop, the strength of the edge the
  blend itself draws (grey levels of 255 per pixel); a hard paste draws the most;
- cut: the share of the moved face (its landmark hull) where the mask is under 0.98, where the still
  photo shows through the moving face (ghosting);
- halo: the mean change the paste makes to the photo around the face (outside the moved face's hull,
  grey levels), the animated crop's background smeared over the photo's: it grows with the feather.

A square paste with LivePortrait's 16-pixel ramp is measured too, as the peer's baseline.

    .venv/bin/python benchmarks/paste_back.py [--pictures docs/]

With ``--pictures`` it also writes the docs' pictures: the mask, and the photo beside the simulated face
pasted back by ``PasteBack``, as ``animate --crop --paste-back`` pastes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import affine_transform

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dagan.config import CropConfig  # noqa: E402
from dagan.face import FaceAnalyzer, head_mask  # noqa: E402
from dagan.io.image import to_float_rgb, write_png  # noqa: E402
from dagan.pipelines.crop import crop_square, framing_box, photo_faces  # noqa: E402
from dagan.pipelines.footage import PasteBack, PhotoFace  # noqa: E402
from tests.footage import PORTRAIT  # noqa: E402

FEATHERS = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2)
ANGLE, SHIFT, GAIN = 4.0, 0.03, 1.04


def moved(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (and its ``points``) turned by ANGLE about its centre, shifted by SHIFT and brightened by GAIN."""
    side = image.shape[0]
    theta = np.deg2rad(ANGLE)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centre, shift = np.array([side / 2, side / 2]), np.array([SHIFT * side, 0.0])
    # affine_transform maps output (row, col) to input coordinates: the inverse of the motion.
    inverse = rotation.T
    offset = centre - inverse @ (centre + shift[::-1])
    channels = [affine_transform(image[..., c], inverse, offset, order=1, mode="nearest") for c in range(3)]
    warped = np.clip(np.stack(channels, axis=-1) * GAIN, 0, 1)
    rows_cols = points[:, ::-1]
    moved_points = ((rows_cols - centre) @ rotation.T + centre + shift[::-1])[:, ::-1]
    return warped.astype(np.float32), moved_points


def square_ramp_mask(side: int, ramp: int = 16) -> np.ndarray:
    """A square mask with a linear ramp of ``ramp`` pixels at its edges (LivePortrait's paste-back)."""
    distance = np.minimum(np.arange(side) + 0.5, side - np.arange(side) - 0.5)
    edge = np.clip(distance / ramp, 0, 1)
    return (edge[:, None] * edge[None, :]).astype(np.float32)


def hull_area(points: np.ndarray, side: int) -> np.ndarray:
    """A boolean (side, side) map of the convex hull of ``points``."""
    from scipy.spatial import ConvexHull

    hull = points[ConvexHull(points).vertices]
    canvas = Image.new("L", (side, side), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in hull], fill=1)
    return np.asarray(canvas, dtype=bool)


def seam_cut_halo(mask: np.ndarray, photo: np.ndarray, animated: np.ndarray, face: np.ndarray) -> tuple[float, ...]:
    """The three figures of the module docstring for one mask."""
    difference = np.abs(animated - photo).mean(axis=2) * 255
    rows, cols = np.gradient(mask)
    seam = float((np.hypot(rows, cols) * difference).max())
    return seam, float((mask[face] < 0.98).mean()), float((mask * difference)[~face].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", type=Path, default=None, help="write crop_mask.png and paste_back.png here")
    args = parser.parse_args()
    if not PORTRAIT.is_file():
        raise SystemExit(f"the sample portrait is not at {PORTRAIT}")
    portrait = Image.open(PORTRAIT).convert("RGB").resize((560, 560), Image.LANCZOS)
    photo_image = Image.new("RGB", (1600, 1200), (86, 112, 78))
    photo_image.paste(portrait, (520, 380))
    photo = to_float_rgb(np.asarray(photo_image))
    config = CropConfig()
    face_box = photo_faces(photo, config)[0]
    box = framing_box(np.array([face_box]), config)
    side = box[2] - box[0]
    landmarks = FaceAnalyzer().landmarks(photo, face_box) - np.array(box[:2], dtype=np.float64)
    still = crop_square(photo, box, side)
    animated, moved_landmarks = moved(still, landmarks)
    face = hull_area(moved_landmarks, side)

    print(f"face box {face_box[2] - face_box[0]:.0f} px, crop {side} px; animated = turned {ANGLE} deg, "
          f"moved {SHIFT:.0%}, {GAIN - 1:.0%} brighter")  # fmt: skip
    print("| mask | feather (face sizes) | seam (grey levels / px) | moving face cut off | halo (grey levels) |")
    print("|---|---:|---:|---:|---:|")
    seam, cut, halo = seam_cut_halo(square_ramp_mask(side), still, animated, face)
    print(f"| square, 16 px ramp (LivePortrait) | - | {seam:.1f} | {cut:.1%} | {halo:.2f} |")
    for feather in FEATHERS:
        seam, cut, halo = seam_cut_halo(head_mask(landmarks, side, feather), still, animated, face)
        print(f"| face and hair | {feather:g} | {seam:.1f} | {cut:.1%} | {halo:.2f} |")

    if args.pictures is not None:
        mask = head_mask(landmarks, side, config.mask_feather)
        shown = still * (0.35 + 0.65 * mask[..., None])
        outline = Image.fromarray((shown * 255).astype(np.uint8))
        draw = ImageDraw.Draw(outline)
        for x, y in landmarks:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(255, 214, 0))
        mask_picture = np.concatenate([np.repeat(mask[..., None], 3, axis=2), to_float_rgb(np.asarray(outline))], 1)
        write_png(args.pictures / "crop_mask.png", np.asarray(Image.fromarray((mask_picture * 255).astype(np.uint8))
                                                              .resize((768, 384), Image.LANCZOS)))  # fmt: skip
        pasted = to_float_rgb(PasteBack(photo, [PhotoFace(0, box, mask)]).compose([animated]))
        margin = side // 6
        view = (slice(max(box[1] - margin, 0), box[3] + margin), slice(max(box[0] - margin, 0), box[2] + margin))
        gap = np.full((photo[view].shape[0], 12, 3), 1.0, np.float32)
        pair = np.concatenate([photo[view], gap, pasted[view]], axis=1)
        height = round(420 * pair.shape[0] / pair.shape[1] * 2)
        write_png(args.pictures / "paste_back.png", np.asarray(Image.fromarray((pair * 255).astype(np.uint8))
                                                               .resize((840, height // 2), Image.LANCZOS)))  # fmt: skip
        print(f"wrote {args.pictures / 'crop_mask.png'} and {args.pictures / 'paste_back.png'}")


if __name__ == "__main__":
    main()
