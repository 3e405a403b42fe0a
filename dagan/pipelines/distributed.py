"""Process-group set-up shared by the trainers: plain runs, and ``torchrun`` (one process per GPU)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler


def setup_distributed() -> tuple[int, int, int]:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU); (rank, world, local rank)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def training_device(name: str, local_rank: int) -> torch.device:
    """The device this process trains on."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
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
