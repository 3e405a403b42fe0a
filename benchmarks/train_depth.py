"""Self-supervised depth training benchmark: seconds per step, with and without --cache-clips.

Run: python benchmarks/train_depth.py [--steps 96] [--size 96]
Renders a small ``dagan synth`` set (32 training clips of 32 frames), then times ``DepthTrainer.run`` with
one loader worker (what the demo recipe uses), first decoding clips on demand, then with all
clips decoded up front. The workers are forked anew every epoch (8 steps at batch 4 here), so
only the up-front decoding survives between epochs. Prints a table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    """Print seconds per step for each cache setting."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=96)
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()

    from dagan.data.synth import write_dataset
    from dagan.pipelines.depth_train import DepthTrainer, DepthTrainOptions

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "synth"
        write_dataset(data, identities=10, clips_per_identity=4, frames=32, size=args.size, seed=1, quiet=True)
        print("| cache | steps | s/step |\n| --- | --- | --- |")
        for cache in (0, 1000):
            options = DepthTrainOptions(
                data=data, out=Path(tmp) / f"run{cache}", size=args.size, max_steps=args.steps, batch_size=4,
                stride=2, workers=1, cache_clips=cache, intrinsics=(0.95, 0.95, 0.5, 0.5), quiet=True,
                checkpoint_every=10**9, visualize_every=10**9,
            )  # fmt: skip
            trainer = DepthTrainer(options)
            started = time.perf_counter()
            trainer.run()
            seconds = time.perf_counter() - started
            print(f"| {'all clips' if cache else 'none'} | {args.steps} | {seconds / args.steps:.3f} |")


if __name__ == "__main__":
    main()
