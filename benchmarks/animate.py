"""Animate benchmark on this machine: frames/s per batch size, peak RSS vs video length, batch drift.

Run: python benchmarks/animate.py [--fps-frames 24] [--short 50] [--long 500]
Each measurement runs in its own process so peak RSS is that run's alone. Prints a table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fixtures import source_image_path, write_looped_clip, write_random_model  # noqa: E402


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args: argparse.Namespace) -> None:
    """One measurement; prints a JSON line."""
    from dagan.io.image import read_image
    from dagan.io.video import iter_frames, probe_video
    from dagan.pipelines.animate import Animator, animate_files

    root = Path(args.root)
    if args.mode == "fps":
        animator = Animator.from_checkpoint(root / "model.pth.tar", root / "depth", device="cpu")
        source = read_image(args.source)
        frames = list(iter_frames(probe_video(args.clip)))
        start = time.perf_counter()
        outputs = [f.prediction for f in animator.animate(source, frames, batch_size=args.batch_size)]
        seconds = time.perf_counter() - start
        np.save(root / f"pred_b{args.batch_size}.npy", np.stack(outputs))
        result = {"frames": len(outputs), "seconds": seconds}
    else:
        report = animate_files(
            args.source, args.clip, root / "model.pth.tar", root / "depth", root / f"out_{args.tag}.mp4",
            batch_size=args.batch_size, device="cpu", quiet=True,
        )  # fmt: skip
        result = {"frames": report.frames, "seconds": report.seconds}
    result["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result))


def _run(root: Path, **kwargs) -> dict:
    argv = [sys.executable, __file__, "--worker", "--root", str(root)]
    for key, value in kwargs.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Orchestrate the measurements and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fps-frames", type=int, default=24)
    parser.add_argument("--short", type=int, default=50)
    parser.add_argument("--long", type=int, default=500)
    parser.add_argument("--rss-batch-size", type=int, default=1, help="1 is the CPU default of dagan animate")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="fps", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    with tempfile.TemporaryDirectory(prefix="dagan-bench-") as tmp:
        root = Path(tmp)
        write_random_model(root)
        source = source_image_path(root)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, full vox-adv-256 model (15 kp), CPU")
        fps_clip = write_looped_clip(root / "fps.mp4", args.fps_frames)
        rows = []
        for batch in (1, 8):
            r = _run(root, mode="fps", clip=fps_clip, source=source, batch_size=batch)
            rows.append((f"frames/s, batch {batch}", f"{r['frames'] / r['seconds']:.3f}"))
        drift = np.abs(np.load(root / "pred_b1.npy") - np.load(root / "pred_b8.npy")).max()
        rows.append(("max |batch 1 - batch 8|", f"{drift:.2e}"))
        rss = {}
        for frames in (args.short, args.long):
            clip = write_looped_clip(root / f"clip{frames}.mp4", frames)
            r = _run(root, mode="rss", clip=clip, source=source, batch_size=args.rss_batch_size, tag=frames)
            rss[frames] = r["peak_rss_mb"]
            rows.append((f"peak RSS, {frames} frames (batch {args.rss_batch_size})", f"{r['peak_rss_mb']:.0f} MB"))
            rows.append((f"frames/s end to end, {frames} frames", f"{r['frames'] / r['seconds']:.3f}"))
        rows.append(("RSS growth long/short", f"{rss[args.long] / rss[args.short]:.3f}x"))
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
