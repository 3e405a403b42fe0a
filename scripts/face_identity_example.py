"""Make docs/face_identity.png: what the face metrics see, and the torch identity network against dlib's.

Panels: a driving frame with dlib's 68 landmarks; the 150x150 chip dlib aligns from them (the
identity network's input); the 128 embedding values of a few frames, dlib's descriptor (x) against
``dagan.nn.dlib_face_resnet`` (y), on the diagonal when they agree.

Run: python scripts/face_identity_example.py [--video ../shared/data/driving.mp4] [--out docs/face_identity.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dagan.face import FaceAnalyzer, _dlib, _shape_predictor, embed_faces, identity_model_path
from dagan.io.image import to_uint8, write_png
from dagan.io.video import iter_frames, probe_video

SIZE = 300


def scatter(pairs: list[tuple[np.ndarray, np.ndarray]], size: int = SIZE) -> Image.Image:
    """dlib's values (x) against ours (y), one colour per frame, with the diagonal and the largest gap."""
    canvas = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(canvas)
    values = np.concatenate([np.concatenate(p) for p in pairs])
    low, high = float(values.min()), float(values.max())
    margin = 30

    def at(v: np.ndarray) -> np.ndarray:
        return margin + (v - low) / (high - low) * (size - 2 * margin)

    draw.line([(margin, size - margin), (size - margin, margin)], fill=(200, 200, 200))
    colours = [(70, 110, 180), (200, 90, 60), (60, 150, 90), (150, 80, 170)]
    for index, (reference, ours) in enumerate(pairs):
        for x, y in zip(at(reference), at(ours), strict=True):
            draw.ellipse([x - 2, size - y - 2, x + 2, size - y + 2], fill=colours[index % len(colours)])
    gap = max(float(np.abs(r - o).max()) for r, o in pairs)
    draw.text((6, 4), f"dlib (x) vs torch (y), {len(pairs)} frames", fill="black")
    draw.text((6, size - 16), f"largest difference {gap:.1e}", fill="black")
    return canvas


def main() -> None:
    """Write the figure."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/driving.mp4")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs/face_identity.png")
    args = parser.parse_args()
    frames = [np.ascontiguousarray(to_uint8(f)) for i, f in enumerate(iter_frames(probe_video(args.video))) if i < 120]
    chosen = frames[::40][:4]
    analyzer = FaceAnalyzer()
    reference = _dlib().face_recognition_model_v1(str(identity_model_path()))
    faces, pairs = [], []
    for pixels in chosen:
        face = analyzer.analyze(pixels, embed=False)
        if face is None:
            continue
        shape = _shape_predictor()(pixels, _dlib().rectangle(*face.box))
        pairs.append(np.array(reference.compute_face_descriptor(pixels, shape)))
        faces.append((pixels, face))
    embed_faces([face for _, face in faces])
    pixels, face = faces[0]
    marked = Image.fromarray(pixels).resize((SIZE, SIZE))
    draw = ImageDraw.Draw(marked)
    scale = SIZE / pixels.shape[1]
    for x, y in face.landmarks * scale:
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(255, 220, 0))
    chip = Image.fromarray(face.chip).resize((SIZE, SIZE), Image.NEAREST)
    plot = scatter([(r, f.embedding) for r, (_, f) in zip(pairs, faces, strict=True)])
    figure = Image.new("RGB", (3 * SIZE + 20, SIZE), "white")
    for index, panel in enumerate((marked, chip, plot)):
        figure.paste(panel, (index * (SIZE + 10), 0))
    write_png(args.out, np.asarray(figure))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
