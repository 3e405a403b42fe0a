"""Where a training step's memory goes: malloc's live bytes against the process's resident size, by phase.

Run: python benchmarks/train_memory.py [--path dagan|low-memory] [--heap keep|default]
     [--allocator default|tcmalloc] [--steps 3]

The full vox-adv-256 model at batch 2 with the ResNet-50 depth network, random weights (the
fixtures of ``benchmarks/train.py``), one process. A thread samples every 2 ms what malloc has
handed out (``dagan.pipelines.memory.heap_usage``) and the resident size (``/proc/self/statm``),
and keeps the largest of each for the phase the step is in: the generator update's forward,
its backward, the two optimiser steps, the discriminator's forward and backward and its step
(the optimiser steps fall inside the backward passes where the trainer applies them there,
``dagan.pipelines.step_in_backward``).
``--heap keep`` sets up the heap as ``dagan train`` does (``keep_freed_memory``); ``--heap
default`` leaves glibc's policy. Resident minus live is what the heap keeps of freed blocks, plus
torch's libraries (about 0.6 GB, the ``before training`` row's difference). ``--allocator tcmalloc``
re-runs the script under tcmalloc as ``dagan train --allocator tcmalloc`` does; malloc's live
bytes are then not known (``mallinfo2`` counts glibc's heap alone), only the resident size.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import _config, write_fixtures  # noqa: E402

from dagan.pipelines.memory import ALLOCATORS, heap_usage, keep_freed_memory, run_under_allocator  # noqa: E402

MB = 2**20


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


class PhaseSampler:
    """The largest live heap and resident size seen in each named phase, from a sampling thread."""

    def __init__(self, interval: float = 0.002):
        self.phase = "before training"
        self.peaks: dict[str, list[int]] = {}
        self._interval = interval
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            usage = heap_usage()
            live, resident = usage.in_use if usage else 0, _resident_bytes()
            peak = self.peaks.setdefault(self.phase, [0, 0])
            peak[0], peak[1] = max(peak[0], live), max(peak[1], resident)
            time.sleep(self._interval)

    def around(self, call, phase: str, after: str | None = None):
        """``call`` wrapped so that ``phase`` starts when it is called and ``after`` when it returns."""

        def wrapped(*args, **kwargs):
            self.phase = phase
            try:
                return call(*args, **kwargs)
            finally:
                self.phase = after or self.phase

        return wrapped


def main() -> None:
    """Train a few steps with the phases labelled, then print each phase's peaks."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", choices=("dagan", "low-memory"), default="low-memory")
    parser.add_argument("--heap", choices=("keep", "default"), default="keep")
    parser.add_argument("--allocator", choices=ALLOCATORS, default="default")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    run_under_allocator(args.allocator, [sys.executable, *sys.argv])
    counts_live = heap_usage() is not None
    if args.heap == "keep":
        keep_freed_memory()
    from dagan.pipelines.train import Trainer, TrainOptions

    with tempfile.TemporaryDirectory(prefix="dagan-train-memory-") as tmp:
        root = Path(tmp)
        write_fixtures(root, "full")
        sampler = PhaseSampler()
        options = TrainOptions(
            data=root / "synth_full", out=root / "run", depth_weights=root / "depth_full",
            vgg_weights=root / "vgg19.pth", workers=0, quiet=True, low_memory=args.path == "low-memory",
        )  # fmt: skip
        trainer = Trainer(options, _config("full", 2))
        trainer.start_training()
        batch = next(iter(trainer.loader()))
        generator_optimiser, discriminator_optimiser = trainer.optimizer_generator, trainer.optimizer_discriminator
        # The calls of train_step that start each phase, as they are before any wrapping.
        calls = (trainer.generator_objective, generator_optimiser.step, trainer.discriminator_objective,
                 discriminator_optimiser.step)  # fmt: skip
        # The updates run inside the backward passes (dagan.pipelines.step_in_backward) unless
        # the trainer cannot do that; then they are phases of their own.
        in_backward = trainer.steps_in_backward
        phases = []
        for step in range(1, args.steps + 1):
            if in_backward:
                labels = ("G forward", "G backward + updates", "D forward", "D backward + updates", "between steps")
            else:
                labels = ("G forward", "G backward", "G+KP optimiser", "D forward", "D backward", "D optimiser",
                          "between steps")  # fmt: skip
            names = [f"step {step}: {label}" for label in labels]
            phases.extend(names)
            trainer.generator_step = sampler.around(calls[0], names[0], after=names[1])
            d_forward = labels.index("D forward")
            trainer.discriminator_step = sampler.around(calls[2], names[d_forward], after=names[d_forward + 1])
            if not in_backward:
                generator_optimiser.step = sampler.around(calls[1], names[2])
                discriminator_optimiser.step = sampler.around(calls[3], names[5])
            started = time.perf_counter()
            trainer.train_step(batch["source"], batch["driving"])
            sampler.phase = names[-1]
            print(f"step {step}: {time.perf_counter() - started:.2f} s", flush=True)
            trainer.step += 1
            time.sleep(0.05)  # a few samples of the quiet heap between steps
    print(f"{args.path}, heap policy {args.heap}, allocator {args.allocator}: largest live heap and resident size "
          "per phase (2 ms samples)")  # fmt: skip
    for phase in ["before training", *phases]:
        if phase in sampler.peaks:
            live, resident = sampler.peaks[phase]
            shown = f"{live / MB:6.0f}" if counts_live else "     -"
            print(f"  {phase:<28} live {shown} MB   resident {resident / MB:6.0f} MB")
    print(f"peak resident (the kernel's count): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
