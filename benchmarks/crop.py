"""``dagan crop`` on 1080p footage: frames per second, and its boxes against full detection on every frame.

The footage is made from the sample driving video (../shared/data/driving.mp4): its face pasted
into 1920x1080 frames, moving in one scene, still and smaller in a second one after a hard cut,
with a tone as its audio. The fast path (shrunk frames, detection every k frames, tracking in
between) is timed end to end, both passes and the encoding included; the plain path detects on
every full-resolution frame. Both run here, in the same process, so the ratio is fair.

    .venv/bin/python benchmarks/crop.py [--frames 250] [--detect-every 5] [--detect-size 640]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dagan.config import CropConfig  # noqa: E402
from dagan.io.video import iter_pixels, probe_video  # noqa: E402
from dagan.pipelines.crop import FaceFinder, crop_files, find_tracks, iou  # noqa: E402
from tests.footage import DRIVING, Scene, write_footage  # noqa: E402


def footage(path: Path, frames: int) -> None:
    """Two scenes of 1080p: a face of ~270 pixels moving 400 pixels, then a still one of ~200."""
    first = frames * 3 // 5
    scenes = [
        Scene(first, 560, (300, 200), (700, 300), (70, 110, 160)),
        Scene(frames - first, 400, (1300, 500), (1250, 480), (170, 120, 60)),
    ]
    write_footage(path, scenes, 1920, 1080)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--detect-every", type=int, default=CropConfig.detect_every)
    parser.add_argument("--detect-size", type=int, default=CropConfig.detect_size)
    args = parser.parse_args()
    if not DRIVING.is_file():
        raise SystemExit(f"the sample driving video is not at {DRIVING}")
    config = CropConfig(detect_every=args.detect_every, detect_size=args.detect_size)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "footage.mp4"
        footage(video, args.frames)
        info = probe_video(video)
        finder = FaceFinder(config.detect_size)  # loaded before the clock starts, as one run loads it once

        started = time.perf_counter()
        report = crop_files(video, Path(tmp) / "out", config, quiet=True)
        fast = time.perf_counter() - started
        tracks, count = find_tracks(info, config, finder, quiet=True)

        started = time.perf_counter()
        full = [finder.boxes(pixels, 1.0) for pixels in iter_pixels(info)]
        plain = time.perf_counter() - started

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
