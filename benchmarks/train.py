"""Training benchmark on this machine: steps/s and peak memory per step.

Run: python benchmarks/train.py [--steps 3]
Configurations: the full vox-adv-256 model at batch 2 (random VGG19 weights stand in for the
ImageNet ones, which cannot be downloaded here; the cost is the same) and configs/tiny-64.yaml at
batch 8, each with the depth-aware attention in its three modes (see ``dagan.nn.attention``):
"auto" (the default: query chunks, SDPA on GPU, plain matmuls on CPU), "sdpa" (query chunks
through SDPA) and "matrix" (the whole HW x HW matrix, as the original). Each runs in its own
process so peak RSS is its own. Prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace) -> None:
    """Time ``args.steps`` optimiser steps of one configuration; prints a JSON line."""
    from _fixtures import randomise_

    from dagan.config import load_config
    from dagan.data.synth import write_dataset
    from dagan.io.checkpoint import write_depth_directory
    from dagan.nn.face_depth import FaceDepthNetwork
    from dagan.nn.vgg import VGG19Features
    from dagan.pipelines.train import Trainer, TrainOptions

    root = Path(args.root)
    config = load_config(REPO / "configs" / "tiny-64.yaml") if args.config == "tiny" else load_config()
    if args.config == "full":
        config.model = config.model.with_num_kp(15)
    config.train = dataclasses.replace(config.train, batch_size=args.batch)
    size = config.data.frame_shape[0]
    data = root / f"synth{size}"
    if not data.exists():
        write_dataset(data, identities=3, clips_per_identity=1, frames=8, size=size, quiet=True)
    generator = torch.Generator().manual_seed(0)
    depth = randomise_(FaceDepthNetwork(config.model.depth), generator)
    write_depth_directory(
        root / "depth", {"depth_encoder": depth.encoder.state_dict(), "depth_decoder": depth.decoder.state_dict()}
    )
    vgg_path = root / "vgg19.pth"
    torch.save(randomise_(VGG19Features(), generator).state_dict(), vgg_path)
    options = TrainOptions(
        data=data,
        out=root / f"run_{args.config}",
        depth_weights=root / "depth",
        vgg_weights=vgg_path,
        workers=0,
        quiet=True,
    )
    trainer = Trainer(options, config)
    trainer.generator.AttnModule.mode = args.attention
    trainer.generator_objective.train()
    batch = next(iter(trainer.loader()))
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        trainer.train_step(batch["source"], batch["driving"])
        times.append(time.perf_counter() - start)
    steady = times[1:] or times
    print(json.dumps({"seconds_per_step": sum(steady) / len(steady),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))  # fmt: skip


def main() -> None:
    """Run each configuration in its own process and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--config", default="tiny", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--attention", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, {args.steps} steps (first is warm-up)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="dagan-train-bench-") as tmp:
        runs = [
            (name, batch, mode) for name, batch in (("full", 2), ("tiny", 8)) for mode in ("auto", "sdpa", "matrix")
        ]
        for name, batch, attention in runs:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", "--root", tmp, "--config", name, "--batch", str(batch),
                 "--steps", str(args.steps), "--attention", attention],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            r = json.loads(out.stdout.strip().splitlines()[-1])
            label = "vox-adv-256 (256x256), batch 2" if name == "full" else "tiny-64 (64x64), batch 8"
            label += f", {attention} attention"
            rows.append((label, f"{1 / r['seconds_per_step']:.3f} steps/s", f"{r['seconds_per_step']:.2f} s/step",
                         f"{r['peak_rss_mb']:.0f} MB peak RSS"))  # fmt: skip
    for row in rows:
        print("  ".join(f"{cell:<48}" if i == 0 else f"{cell:>18}" for i, cell in enumerate(row)))


if __name__ == "__main__":
    main()
