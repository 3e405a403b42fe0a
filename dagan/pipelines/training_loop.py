"""The training loop that ``dagan train`` and ``dagan train-depth`` share.

``TrainingLoop`` owns what every run does the same way: ranks and device, the run folder and its
log, the epoch and step counters that ``--resume`` restores, the data order of each epoch, the
progress bar, and the cadence of logging, pictures, validation and checkpoints. A trainer
subclasses it and implements only its own parts: building its networks, one optimisation step
(``step_batch``), what it logs, draws and validates, and how its state is saved and resumed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dagan.errors import DaganError
from dagan.pipelines.distributed import RunLog, check_run_directory, epoch_loader, select_device, setup_distributed


class TrainingLoop:
    """One training run: set-up, the epoch/step loop and its cadence; subclasses supply the rest.

    ``options`` must have ``device``, ``out``, ``resume``, ``max_steps``, ``seed``, ``workers``,
    ``quiet`` and the cadences ``log_every``, ``visualize_every``, ``validate_every`` (0: never)
    and ``checkpoint_every``.
    """

    #: What the "smaller than one batch" error tells the user to lower.
    batch_size_setting = "--batch-size"
    #: Whether the run also ends after ``epochs`` epochs when ``max_steps`` asks for more.
    stops_after_epochs = False

    options: Any
    dataset: Dataset
    validation: list[dict[str, float]]

    def _setup(self, options: Any) -> None:
        """Ranks and device; the counters a resumed run restores."""
        self.options = options
        self.rank, self.world, local_rank = setup_distributed()
        self.device = select_device(options.device, local_rank)
        self.step, self.epoch, self.step_in_epoch = 0, 0, 0
        self.total_steps = 0
        #: The latest batch and what the step made of it, for pictures.
        self._last: tuple | None = None

    def _open_run(self, marker: str) -> None:
        """The run folder (a fresh run must not overwrite one; ``--resume`` needs one) and its log."""
        self.out = Path(self.options.out)
        if self.rank == 0:
            check_run_directory(self.out, self.options.resume, marker)
        self.log = RunLog(self.out, enabled=self.rank == 0)

    # ------------------------------------------------------------- what a trainer implements
    @property
    def batch_size(self) -> int:
        """Samples per step and rank."""
        raise NotImplementedError

    @property
    def epochs(self) -> int:
        """Epochs of a run without ``max_steps``."""
        raise NotImplementedError

    def start_training(self) -> None:
        """Put the networks in training mode."""
        raise NotImplementedError

    def step_batch(self, batch: dict) -> dict[str, float]:
        """One optimisation step on a batch from the loader; the numbers to log."""
        raise NotImplementedError

    def log_record(self, values: dict[str, float]) -> dict:
        """The run-log line for a step's ``values``."""
        return {"step": self.step, "epoch": self.epoch, **values}

    def progress(self, values: dict[str, float]) -> dict[str, str]:
        """What the progress bar shows after a step."""
        return {key: f"{value:.3f}" for key, value in list(values.items())[:3]}

    def draw(self, *last: Any) -> None:
        """Save pictures of the latest step (``self._last``)."""

    def validate(self) -> dict[str, float] | None:
        """Score the model (rank 0 only), append to ``self.validation`` and log it; None if it cannot."""
        return None

    def end_epoch(self) -> None:
        """Whatever a trainer does once an epoch (learning-rate schedules)."""

    def save(self) -> None:
        """Write the weights and everything ``--resume`` needs (rank 0 only)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------- the loop
    def steps_per_epoch(self) -> int:
        """Optimiser steps in one epoch (per rank)."""
        return len(self.dataset) // self.world // self.batch_size

    def loader(self) -> DataLoader:
        """This epoch's batches, from where a resumed run stopped; the order depends only on seed and epoch."""
        options = self.options
        return epoch_loader(
            self.dataset, self.batch_size, self.epoch, self.step_in_epoch, options.seed, options.workers, self.device
        )

    def visualize(self) -> None:
        """Draw the latest step, on rank 0, once there is one."""
        if self._last is not None and self.rank == 0:
            self.draw(*self._last)

    def train_loop(self) -> float:
        """Train until ``max_steps`` or the epochs are done; returns the seconds it took."""
        started = time.perf_counter()
        options = self.options
        per_epoch = self.steps_per_epoch()
        if per_epoch < 1:
            raise DaganError(
                f"the training set is smaller than one batch: lower {self.batch_size_setting} or add clips"
            )
        total = options.max_steps if options.max_steps is not None else self.epochs * per_epoch
        self.total_steps = total
        self.start_training()
        if self.step == 0:
            self.validate()
        hidden = options.quiet or self.rank != 0
        bar = tqdm(total=total, initial=self.step, unit="step", disable=hidden, file=sys.stderr)
        while self.step < total and not (self.stops_after_epochs and self.epoch >= self.epochs):
            for batch in self.loader():
                if self.step >= total:
                    break
                values = self.step_batch(batch)
                self.step += 1
                self.step_in_epoch += 1
                bar.update(1)
                bar.set_postfix(self.progress(values))
                if self.step % options.log_every == 0 or self.step == total:
                    self.log.scalars(self.log_record(values))
                if self.step % options.visualize_every == 0:
                    self.visualize()
                if options.validate_every and self.step % options.validate_every == 0:
                    self.validate()
                if self.step % options.checkpoint_every == 0:
                    self.save()
            else:
                self.epoch += 1
                self.step_in_epoch = 0
                self.end_epoch()
        bar.close()
        if not self.validation or self.validation[-1]["step"] != self.step:
            self.validate()
        self.visualize()
        self.save()
        self.log.close()
        return time.perf_counter() - started
