"""A sample grid of cross-identity results: one row per (pair, frame), columns source | driving | result | truth.

python scripts/demo_grid.py --eval-set runs/demo/eval --generated dagan_cross --out docs/demo_cross_grid.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dagan.io.image import read_image, to_uint8, write_png
from dagan.io.video import read_video


def main() -> None:
    """Write the grid PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-set", required=True, type=Path, help="a dagan synth-eval folder")
    parser.add_argument("--generated", default="dagan_cross", help="folder of results inside it")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--frames", default="8,24", help="comma-separated frame indices")
    parser.add_argument("--zoom", type=int, default=2, help="integer upscaling, for legibility")
    args = parser.parse_args()
    names = sorted(p.stem for p in (args.eval_set / args.generated).glob("*.mp4"))[::4][: args.pairs]
    rows = []
    for name in names:
        source = to_uint8(read_image(args.eval_set / "source_cross" / f"{name}.png")[..., :3])
        videos = [
            read_video(args.eval_set / folder / f"{name}.mp4")[0]
            for folder in ("driving_cross", args.generated, "gt_cross")
        ]
        for index in (int(i) for i in args.frames.split(",")):
            rows.append(np.concatenate([source, *(video[min(index, len(video) - 1)] for video in videos)], axis=1))
    grid = np.concatenate(rows, axis=0)
    write_png(args.out, np.kron(grid, np.ones((args.zoom, args.zoom, 1), dtype=np.uint8)))
    print(f"wrote {args.out}: {len(names)} pairs x {len(rows) // max(len(names), 1)} frames")


if __name__ == "__main__":
    main()
