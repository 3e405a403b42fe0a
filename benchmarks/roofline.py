"""How close training and evaluation run to this machine's arithmetic peak, and what that bounds.

Run: python benchmarks/roofline.py [--steps 3] [--frames 16] [--skip-train]

Convolutions and matrix products are nearly all the arithmetic of a training step and of FID's
Inception. When they already run near the processor's peak, only doing less of them makes a run
faster; this script says how near they are, and so what the speed bars of benchmarks/train.py
and benchmarks/evaluate.py can be on the host at hand.

1. The peak: the best of several float32 products of two 4096x4096 matrices on all of torch's
   threads, in GFLOP/s (1 multiply-add = 2 FLOPs).
2. Training, the full vox-adv-256 model at batch 2 as in benchmarks/train.py (random weights, its
   fixtures): the plain path, written the way the original computes a step, and ``dagan train
   --low-memory --allocator tcmalloc`` (without tcmalloc where none is found), each in its own
   process. Each runs ``--steps`` timed steps after a warm-up, then one more step under
   ``torch.utils.flop_counter``'s formulas (convolutions and matrix products, forward and
   backward, and the low-memory path's recomputation), untimed: counting slows every operation. Printed: FLOPs a
   step, median s/step, the GFLOP/s achieved over the whole step and its share of the peak, and
   the plain path's FLOPs over dagan's, the speed ratio that doing less work would give alone.
3. Evaluation: FID's Inception as ``dagan evaluate`` runs it on CPU (batch norms folded,
   channels-last) on 256x256 frames at a batch of ``--frames``: FLOPs and ms a frame, its share
   of the peak, and the cost of a pair's two frames, measured and at the peak, next to the
   0.175 s a pair bar of the whole image metric set.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train as train_benchmark  # noqa: E402

#: The issue's bar for the whole image metric set, seconds a pair (10x the reproduction's 1.75 s).
EVALUATION_BAR_S = 0.175


def matrix_product_peak(size: int = 4096, repeats: int = 5) -> float:
    """GFLOP/s of the fastest of ``repeats`` float32 (size x size) @ (size x size) products."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    fastest = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        fastest = min(fastest, time.perf_counter() - started)
    return 2 * size**3 / fastest / 1e9


class _FlopCounter(TorchDispatchMode):
    """torch.utils.flop_counter's per-operation formulas without FlopCounterMode's module hooks,
    which fail inside ``autograd.grad`` (the equivariance Jacobian, the updates applied in backward)."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        return out


def counted_flops(function) -> int:
    """FLOPs of the convolutions and matrix products ``function()`` runs (forward and backward)."""
    with _FlopCounter() as counter:
        function()
    return counter.flops


def worker(root: str, path: str, steps: int) -> None:
    """Time ``steps`` steps of one training path after a warm-up, count one more; prints a JSON line."""
    run_step = train_benchmark.prepare(Path(root), "full", 2, path)
    run_step()
    seconds = statistics.median(run_step()[0] for _ in range(steps))
    print(json.dumps({"seconds_per_step": seconds, "flops": counted_flops(run_step)}))


def _run_worker(root: str, path: str, steps: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", path, "--root", root, "--steps", str(steps)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def training_rows(steps: int, peak: float) -> list[str]:
    """The training paths' FLOPs, time and share of the peak."""
    from dagan.pipelines.memory import find_tcmalloc

    ours = "low-memory+tcmalloc" if find_tcmalloc() is not None else "low-memory"
    rows = [f"training, vox-adv-256 (15 kp, ResNet-{train_benchmark.FULL_DEPTH_LAYERS} depth), batch 2:"]
    with tempfile.TemporaryDirectory(prefix="dagan-roofline-") as tmp:
        train_benchmark.write_fixtures(Path(tmp), "full")
        results = {path: _run_worker(tmp, path, steps) for path in ("plain", ours)}
    for path, r in results.items():
        rate = r["flops"] / r["seconds_per_step"] / 1e9
        rows.append(
            f"  {path:<20} {r['flops'] / 1e12:6.2f} TFLOP/step  {r['seconds_per_step']:6.2f} s/step  "
            f"{rate:5.0f} GFLOP/s ({rate / peak:.0%} of the peak); at the peak {r['flops'] / 1e9 / peak:5.2f} s/step"
        )
    plain, dagan = results["plain"], results[ours]
    rows.append(
        f"  plain's FLOPs / {ours}'s: {plain['flops'] / dagan['flops']:.2f}x (the speed ratio from less work "
        f"alone); measured here: {plain['seconds_per_step'] / dagan['seconds_per_step']:.2f}x"
    )
    return rows


def inception_rows(frames: int, peak: float, repeats: int = 3) -> list[str]:
    """FID's Inception, as ``dagan evaluate`` runs it on CPU: FLOPs and time a frame."""
    from _fixtures import randomise_

    from dagan.nn.fid_inception import FidInception

    network = randomise_(FidInception(), torch.Generator().manual_seed(1)).fold_batch_norms()
    network = network.to(memory_format=torch.channels_last)
    images = torch.rand(frames, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    images = images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():  # under inference mode the dispatch mode sees no convolution to count
        flops = counted_flops(lambda: network(images)) / frames
    with torch.inference_mode():
        network(images)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            network(images)
            times.append((time.perf_counter() - started) / frames)
    seconds = statistics.median(times)
    rate = flops / seconds / 1e9
    return [
        f"evaluation, FID's Inception (299x299, folded, channels-last), batch {frames}:",
        f"  {flops / 1e9:.1f} GFLOP a frame, {seconds * 1e3:.1f} ms a frame: {rate:.0f} GFLOP/s ({rate / peak:.0%} of "
        f"the peak)",
        f"  a pair's two frames: {2 * seconds:.3f} s measured, {2 * flops / 1e9 / peak:.3f} s at the peak, against "
        f"{EVALUATION_BAR_S} s a pair for the whole image metric set",
    ]


def main() -> None:
    """Measure the peak, then the training paths and the Inception against it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per path, after a warm-up")
    parser.add_argument("--frames", type=int, default=16, help="Inception batch")
    parser.add_argument("--skip-train", action="store_true", help="only the peak and the Inception")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 1 or args.frames < 1:
        parser.error("--steps and --frames must be at least 1")
    if args.worker:
        worker(args.root, args.worker, args.steps)
        return
    peak = matrix_product_peak()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print(f"peak: float32 4096x4096 matrix product, {peak:.0f} GFLOP/s")
    rows = inception_rows(args.frames, peak)
    if not args.skip_train:
        rows = training_rows(args.steps, peak) + rows
    print("\n".join(rows))


if __name__ == "__main__":
    main()
