"""What the trainers share: devices, the torchrun process group, epoch loaders and run logs."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from dagan.errors import DaganError
from dagan.io.image import write_png


def setup_distributed() -> tuple[int, int, int]:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU); (rank, world, local rank)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def select_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; an unavailable device is a ``DaganError``."""
    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DaganError("--device cuda: no CUDA device is available here")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if name == "mps" and not has_mps:
        raise DaganError("--device mps: Apple MPS is not available here")
    return torch.device(name)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


class SkipSampler(Sampler):
    """Drop the first ``skip`` indices of another sampler: resuming in the middle of an epoch."""

    def __init__(self, sampler: Sampler, skip: int):
        self.sampler, self.skip = sampler, skip

    def __iter__(self) -> Iterator[int]:
        for i, index in enumerate(self.sampler):
            if i >= self.skip:
                yield index

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


class SeededSampler(Sampler):
    """A shuffled order that depends only on (seed, epoch); the single-process twin of DistributedSampler."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


def epoch_loader(
    dataset: Dataset, batch_size: int, epoch: int, skip_batches: int, seed: int, workers: int, device: torch.device
) -> DataLoader:
    """Batches of one epoch in an order fixed by (seed, epoch), each rank its share, resumable mid-epoch."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        sampler = DistributedSampler(
            dataset, dist.get_world_size(), dist.get_rank(), shuffle=True, seed=seed, drop_last=True
        )
    else:
        sampler = SeededSampler(len(dataset), seed)
    sampler.set_epoch(epoch)
    dataset.set_epoch(epoch)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=SkipSampler(sampler, skip_batches * batch_size),
        num_workers=workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
    )


class RunLog:
    """``RUN_DIR/log.jsonl`` plus TensorBoard scalars and images (rank 0 only)."""

    def __init__(self, out: Path, enabled: bool = True):
        self.out, self.enabled = out, enabled
        self._writer = None

    def _tensorboard(self):
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.out / "tensorboard"))
            except ImportError:
                self._writer = False
        return self._writer

    def scalars(self, record: dict) -> None:
        """Append ``record`` (which holds ``step``) to the log and its numbers to TensorBoard."""
        if not self.enabled:
            return
        with open(self.out / "log.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if writer := self._tensorboard():
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    writer.add_scalar(key, value, record["step"])

    def image(self, tag: str, image, step: int) -> None:
        """Save an (H, W, 3) [0, 1] image under ``visuals/`` and in TensorBoard."""
        if not self.enabled:
            return
        (self.out / "visuals").mkdir(exist_ok=True)
        write_png(self.out / "visuals" / f"step_{step:08d}.png", image)
        if writer := self._tensorboard():
            writer.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        """Flush TensorBoard."""
        if self._writer:
            self._writer.close()


def check_run_directory(out: Path, resume: bool, marker: str) -> None:
    """A fresh run must not overwrite an earlier one; ``--resume`` needs one."""
    if resume and not (out / marker).is_file():
        raise DaganError(f"--resume: no earlier run in {out} (no {marker})")
    if not resume and (out / marker).exists():
        raise DaganError(f"{out} already holds a run ({marker}); pass --resume to continue it or choose a new --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DaganError(f"cannot create {out}: {exc.strerror or exc}") from exc
