"""``dagan crop`` on 1080p footage: frames per second, and its boxes against full detection on every frame.

The footage is made from the sample driving video (../shared/data/driving.mp4): its face pasted
into 1920x1080 frames, moving in one scene, still and smaller in a second one after a hard cut,
with a tone as its audio. The fast path (shrunk frames, detection every k frames, tracking in
between) is timed end to end, both passes and the encoding included; the plain path detects on
every full-resolution frame. Both run here, in the same process, so the ratio is fair.

    .venv/bin/python benchmarks/crop.py [--frames 250] [--detect-every 5] [--detect-size 640] [--pictures docs/]

With ``--pictures`` it also writes the docs' pictures: the framing rule and the run's preview.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dagan.config import CropConfig  # noqa: E402
from dagan.io.video import iter_pixels, probe_video  # noqa: E402
from dagan.pipelines.crop import FaceFinder, crop_files, draw_boxes, find_tracks, framing_box, iou  # noqa: E402
from tests.footage import DRIVING, Scene, write_footage  # noqa: E402


def footage(path: Path, frames: int) -> None:
    """Two scenes of 1080p: a face of ~270 pixels moving 400 pixels, then a still one of ~200."""
    first = frames * 3 // 5
    scenes = [
        Scene(first, 560, (300, 200), (700, 300), (70, 110, 160)),
        Scene(frames - first, 400, (1300, 500), (1250, 480), (170, 120, 60)),
    ]
    write_footage(path, scenes, 1920, 1080)


def pictures(folder: Path, info, report, finder: FaceFinder) -> None:
    """The framing rule on the sample crop and on a 1080p frame, and the preview of this run."""
    sample = next(iter_pixels(probe_video(DRIVING)))
    face = finder.boxes(sample, 1.0)[0]
    measured = draw_boxes(sample, [(face, "dlib face box"), ((0, 0, 255, 255), "")], 384)
    frame = next(iter_pixels(info))
    face_big = finder.boxes(frame, 1.0)[0]
    crop = framing_box(np.array([face_big]))
    framed = draw_boxes(frame, [(face_big, "face"), (crop, "crop: face / 0.49, centre 0.11 face above")], 683)
    sheet = Image.new("RGB", (384 + 12 + 683, 384), (255, 255, 255))
    sheet.paste(measured, (0, 0))
    sheet.paste(framed, (396, (384 - framed.height) // 2))
    sheet.save(folder / "crop_framing.png")
    Image.open(report.preview).save(folder / "crop_preview.png")
    print(f"wrote {folder / 'crop_framing.png'} and {folder / 'crop_preview.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--detect-every", type=int, default=CropConfig.detect_every)
    parser.add_argument("--detect-size", type=int, default=CropConfig.detect_size)
    parser.add_argument("--pictures", type=Path, default=None, help="write crop_framing.png and crop_preview.png here")
    args = parser.parse_args()
    if not DRIVING.is_file():
        raise SystemExit(f"the sample driving video is not at {DRIVING}")
    config = CropConfig(detect_every=args.detect_every, detect_size=args.detect_size)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "footage.mp4"
        footage(video, args.frames)
        info = probe_video(video)
        finder = FaceFinder()  # loaded before the clock starts, as one run loads it once

        started = time.perf_counter()
        report = crop_files(video, Path(tmp) / "out", config, quiet=True)
        fast = time.perf_counter() - started
        tracks, times = find_tracks(info, config, finder, quiet=True)
        count = len(times)

        started = time.perf_counter()
        full = [finder.boxes(pixels, 1.0) for pixels in iter_pixels(info)]
        plain = time.perf_counter() - started
        if args.pictures is not None:
            pictures(args.pictures, info, report, finder)

    overlaps, missed = [], 0
    for frame, boxes in enumerate(full):
        tracked = [track.box_at(frame) for track in tracks if track.start <= frame < track.end]
        for box in boxes:
            best = max((iou(box, other) for other in tracked), default=0.0)
            missed += best == 0.0
            overlaps.append(best)
    print(f"1080p footage, {count} frames, {len(report.clips)} clips, detection every {config.detect_every} "
          f"frames at {config.detect_size} pixels")  # fmt: skip
    print(f"dagan crop, both passes and encoding: {fast:.2f} s = {count / fast:.1f} frames/s")
    print(f"full-resolution detection on every frame alone: {plain:.2f} s = {count / plain:.1f} frames/s")
    print(f"speed-up over full detection: {plain / fast:.1f}x")
    overlaps = np.array(overlaps)
    print(f"tracked box vs full detection: mean IoU {overlaps.mean():.3f}, 5th percentile "
          f"{np.percentile(overlaps, 5):.3f}, faces missed {missed} of {len(overlaps)}")  # fmt: skip


if __name__ == "__main__":
    main()
