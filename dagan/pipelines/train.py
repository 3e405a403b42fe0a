"""DaGAN training: the original objective, Adam + MultiStepLR, atomic checkpoints, exact resume,
TensorBoard logging and DistributedDataParallel (``torchrun --nproc_per_node=N -m dagan train``).

Checkpoints keep the original layout (``generator``, ``kp_detector``, ``discriminator``, the three
``optimizer_*`` and ``epoch``) so the original demo and ``dagan animate`` read them; the extra keys
(``step``, ``scheduler_*``, ``config``) let ``--resume`` continue exactly.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from dagan.config import Config, config_to_dict, load_config
from dagan.data.dataset import DatasetRepeater, FramesDataset
from dagan.errors import DaganError, first_line
from dagan.io.atomic import removed_if_failed_empty
from dagan.io.checkpoint import (
    load_strict,
    load_torch_file,
    read_depth_weights,
    recorded_align_corners,
    write_original_checkpoint,
)
from dagan.nn import KeypointDetector, MultiScaleDiscriminator
from dagan.nn.vgg import VGG19Features
from dagan.options import TrainOptions
from dagan.pipelines.distributed import unwrap
from dagan.pipelines.networks import build_generator, load_depth_network
from dagan.pipelines.objective import DiscriminatorObjective, EquivarianceTransform, GeneratorObjective
from dagan.pipelines.optim import Adam
from dagan.pipelines.precision import autocast, check_precision
from dagan.pipelines.recompute import recompute_blocks
from dagan.pipelines.step_in_backward import stepping_in_backward
from dagan.pipelines.training_loop import TrainingLoop

CHECKPOINT_NAME = "checkpoint.pth.tar"
VGG19_HUB_FILE = "vgg19-dcbb9e9d.pth"


@dataclass
class TrainResult:
    """The trained networks and the last validation figures."""

    kp_detector: KeypointDetector
    generator: nn.Module
    discriminator: MultiScaleDiscriminator
    step: int
    validation: list[dict[str, float]]
    seconds: float


def find_vgg19_weights(path: Path | None) -> Path:
    """The user's ``--vgg-weights`` or torchvision's file in the torch hub cache."""
    candidates = [path] if path is not None else [Path(torch.hub.get_dir()) / "checkpoints" / VGG19_HUB_FILE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DaganError(
        f"VGG19 ImageNet weights not found at {candidates[0]}: pass --vgg-weights PATH (torchvision's "
        f"{VGG19_HUB_FILE}), or set train.perceptual_backbone: l1_pyramid (or perceptual weights to 0) in the config"
    )


def load_vgg19(path: Path) -> VGG19Features:
    """VGG19 features from torchvision's full checkpoint (``features.*`` keys) or a features-only one."""
    raw = load_torch_file(path)
    if not isinstance(raw, dict):
        raise DaganError(f"VGG19 weights {path} are not a state dict")
    state = {k.removeprefix("features."): v for k, v in raw.items() if not k.startswith("classifier.")}
    vgg = VGG19Features()
    load_strict(vgg, state, "VGG19 features", str(path))
    return vgg.eval()


def draw_keypoints(image: np.ndarray, kp_value: np.ndarray, radius: int = 2) -> np.ndarray:
    """Mark keypoints (x, y in [-1, 1]) on an (H, W, 3) float image, one colour per keypoint."""
    out = image.copy()
    h, w = out.shape[:2]
    count = len(kp_value)
    for k, (x, y) in enumerate(kp_value):
        cx, cy = int(round((x + 1) / 2 * (w - 1))), int(round((y + 1) / 2 * (h - 1)))
        hue = k / max(count, 1)
        colour = np.array([abs(hue * 6 - 3) - 1, 2 - abs(hue * 6 - 2), 2 - abs(hue * 6 - 4)]).clip(0, 1)
        out[max(cy - radius, 0) : cy + radius + 1, max(cx - radius, 0) : cx + radius + 1] = colour
    return out


def _hwc(batch: torch.Tensor, index: int) -> np.ndarray:
    return batch[index].detach().float().cpu().permute(1, 2, 0).numpy()


def visual_grid(source: torch.Tensor, driving: torch.Tensor, generated: dict) -> np.ndarray:
    """Rows of: source + kp, driving + kp, deformed, prediction, blend mask if any, occlusion (like the
    original visualizer)."""
    rows = []
    n = min(source.shape[0], 4)
    for i in range(n):
        panels = [
            draw_keypoints(_hwc(source, i), generated["kp_source"].value[i].detach().float().cpu().numpy()),
            draw_keypoints(_hwc(driving, i), generated["kp_driving"].value[i].detach().float().cpu().numpy()),
            _hwc(generated["deformed"], i),
            _hwc(generated["prediction"], i),
        ]
        if "blend_mask" in generated:  # white: the warped source shows through
            mask = generated["blend_mask"][i].detach().float().cpu().permute(1, 2, 0).numpy()
            panels.append(np.repeat(mask, 3, axis=2))
        if "occlusion_map" in generated:
            occlusion = torch.nn.functional.interpolate(
                generated["occlusion_map"][i : i + 1].float(), size=source.shape[2:]
            )
            panels.append(np.repeat(occlusion[0].detach().cpu().permute(1, 2, 0).numpy(), 3, axis=2))
        rows.append(np.concatenate(panels, axis=1))
    return np.concatenate(rows, axis=0).clip(0, 1)


class Trainer(TrainingLoop):
    """One DaGAN training run; ``run`` trains until ``max_steps`` or the configured epochs."""

    batch_size_setting = "train.batch_size"
    stops_after_epochs = True

    def __init__(self, options: TrainOptions, config: Config | None = None):
        if options.low_memory and options.compile:
            # torch.compile takes recomputation only from dispatch modes, not these buffer contexts.
            raise DaganError("--low-memory and --compile do not work together yet; choose one")
        self._setup(options)
        self.config = config or load_config(options.config)
        if options.depth_weights is None:
            raise DaganError(
                "dagan train needs --depth-weights DIR (encoder.pth + depth.pth, e.g. from dagan train-depth) "
                "or a .safetensors holding them"
            )
        self._open_run(CHECKPOINT_NAME)
        torch.manual_seed(options.seed)
        model = self.config.model
        self.kp_detector = KeypointDetector(model.kp_detector).to(self.device)
        self.generator = build_generator(model.generator).to(self.device)
        self.discriminator = MultiScaleDiscriminator(model.discriminator).to(self.device)
        self.depth = load_depth_network(read_depth_weights(options.depth_weights)).to(self.device)
        train = self.config.train
        vgg = None
        if sum(train.loss_weights.perceptual) != 0 and train.perceptual_backbone == "vgg19":
            vgg = load_vgg19(find_vgg19_weights(options.vgg_weights)).to(self.device)
        if self.world > 1 and self.device.type == "cuda":
            self.kp_detector = nn.SyncBatchNorm.convert_sync_batchnorm(self.kp_detector)
            self.generator = nn.SyncBatchNorm.convert_sync_batchnorm(self.generator)

        self.generator_objective = GeneratorObjective(
            self.kp_detector, self.generator, self.discriminator, self.depth, train, vgg
        ).to(self.device)
        self.discriminator_objective = DiscriminatorObjective(self.discriminator, train).to(self.device)
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # The generator step must not sync (or even touch) the discriminator's gradients.
            self.discriminator.requires_grad_(False)
            self.generator_step = nn.parallel.DistributedDataParallel(self.generator_objective, device_ids=ids)
            self.discriminator.requires_grad_(True)
            self.discriminator_step = nn.parallel.DistributedDataParallel(self.discriminator_objective, device_ids=ids)
        else:
            self.generator_step, self.discriminator_step = self.generator_objective, self.discriminator_objective
        check_precision(options.precision, self.device)
        if options.low_memory:
            # These two keep about three quarters of what a step keeps for backward; the
            # discriminator and VGG19 a fifth, the frozen depth network nothing (docs/performance.md).
            for network in (self.kp_detector, self.generator):
                recompute_blocks(network)
        if options.compile:
            # The networks, not the objectives: the equivariance Jacobian differentiates the warp
            # twice, which compiled graphs cannot, and compiled modules keep their state-dict keys.
            # Static shapes, as in animate: a network seen before at another size would otherwise
            # be recompiled with symbolic sizes, which inductor fails on for these graphs.
            for network in (self.kp_detector, self.generator, self.discriminator, self.depth, vgg):
                if network is not None:
                    network.compile(dynamic=False)
        # Loss scaling keeps fp16 gradients from underflowing; bf16 and fp32 do not need it.
        self.scalers = {
            name: torch.amp.GradScaler(self.device.type, enabled=options.precision == "fp16")
            for name in ("generator", "discriminator")
        }

        # Each update in the backward pass takes the gradients off the step's memory peak; see
        # dagan.pipelines.step_in_backward for why it is exact and the two cases it cannot serve.
        self.steps_in_backward = self.world == 1 and options.precision != "fp16"
        betas = (0.5, 0.999)
        self.optimizer_generator = Adam(self.generator.parameters(), lr=train.lr_generator, betas=betas)
        self.optimizer_kp_detector = Adam(self.kp_detector.parameters(), lr=train.lr_kp_detector, betas=betas)
        self.optimizer_discriminator = Adam(self.discriminator.parameters(), lr=train.lr_discriminator, betas=betas)
        milestones = list(train.epoch_milestones)
        self.schedulers = {
            name: torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.1)
            for name, opt in (
                ("generator", self.optimizer_generator),
                ("kp_detector", self.optimizer_kp_detector),
                ("discriminator", self.optimizer_discriminator),
            )
        }
        self.dataset = DatasetRepeater(
            FramesDataset(options.data, "train", self.config.data, seed=options.seed, cache_clips=options.cache_clips),
            train.num_repeats,
        )
        self.validation: list[dict[str, float]] = []
        self._validation_set = None
        if options.resume:
            self._resume()

    # ----------------------------------------------------------------- state
    def _checkpoint_payload(self) -> tuple[dict, dict]:
        groups = {
            "generator": unwrap(self.generator).state_dict(),
            "kp_detector": unwrap(self.kp_detector).state_dict(),
            "discriminator": self.discriminator.state_dict(),
        }
        extra = {
            "optimizer_generator": self.optimizer_generator.state_dict(),
            "optimizer_kp_detector": self.optimizer_kp_detector.state_dict(),
            "optimizer_discriminator": self.optimizer_discriminator.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "step_in_epoch": self.step_in_epoch,
            **{f"scheduler_{k}": s.state_dict() for k, s in self.schedulers.items()},
            **{f"grad_scaler_{k}": s.state_dict() for k, s in self.scalers.items()},
            "config": config_to_dict(self.config),
            "validation": self.validation,
        }
        return groups, extra

    def save_checkpoint(self) -> Path:
        """Write the checkpoint atomically (rank 0 only)."""
        path = self.out / CHECKPOINT_NAME
        if self.rank == 0:
            groups, extra = self._checkpoint_payload()
            write_original_checkpoint(path, groups, extra)
        return path

    def _resume(self) -> None:
        path = self.out / CHECKPOINT_NAME
        if not path.is_file():
            raise DaganError(f"--resume: no checkpoint at {path}")
        state = load_torch_file(path)
        missing = [
            k
            for k in ("step", "step_in_epoch", "epoch", "optimizer_generator", "scheduler_generator")
            if k not in state
        ]
        if missing:
            raise DaganError(f"--resume: {path} was not written by dagan train (it lacks {', '.join(missing)})")
        saved = state.get("config")
        if saved is not None and saved.get("train", {}).get("batch_size") != self.config.train.batch_size:
            raise DaganError(
                "--resume: the config's train.batch_size differs from the run's; the data order would change"
            )
        if (
            saved is not None
            and recorded_align_corners(saved) != self.config.model.generator.dense_motion.align_corners
        ):
            raise DaganError("--resume: the config's dense_motion.align_corners differs from the run's")
        for name, module in (
            ("generator", unwrap(self.generator)),
            ("kp_detector", unwrap(self.kp_detector)),
            ("discriminator", self.discriminator),
        ):
            load_strict(module, state[name], name, str(path))
        try:
            self.optimizer_generator.load_state_dict(state["optimizer_generator"])
            self.optimizer_kp_detector.load_state_dict(state["optimizer_kp_detector"])
            self.optimizer_discriminator.load_state_dict(state["optimizer_discriminator"])
            for name, scheduler in self.schedulers.items():
                scheduler.load_state_dict(state[f"scheduler_{name}"])
            for name, scaler in self.scalers.items():
                if state.get(f"grad_scaler_{name}"):
                    scaler.load_state_dict(state[f"grad_scaler_{name}"])
        except (KeyError, ValueError) as exc:
            raise DaganError(
                f"--resume: the optimiser state in {path} does not fit this model ({first_line(exc)})"
            ) from exc
        self.epoch, self.step, self.step_in_epoch = int(state["epoch"]), int(state["step"]), int(state["step_in_epoch"])
        self.validation = list(state.get("validation", []))

    # ------------------------------------------------------- what the loop asks of a trainer
    @property
    def batch_size(self) -> int:
        """Clips per step and rank (``train.batch_size``)."""
        return self.config.train.batch_size

    @property
    def epochs(self) -> int:
        """``train.num_epochs``."""
        return self.config.train.num_epochs

    def start_training(self) -> None:
        """Training mode for every network the objective holds."""
        self.generator_objective.train()

    def step_batch(self, batch: dict) -> dict[str, float]:
        """``train_step`` on a loader batch."""
        source = batch["source"].to(self.device, non_blocking=True)
        driving = batch["driving"].to(self.device, non_blocking=True)
        return self.train_step(source, driving)

    def log_record(self, values: dict[str, float]) -> dict:
        """The losses and each optimiser's learning rate."""
        lrs = {f"lr_{k}": s.get_last_lr()[0] for k, s in self.schedulers.items()}
        return {"step": self.step, "epoch": self.epoch, **values, **lrs}

    def draw(self, source: torch.Tensor, driving: torch.Tensor, generated: dict) -> None:
        """Source and driving with keypoints, deformed, prediction, occlusion."""
        self.log.image("visuals", visual_grid(source, driving, generated), self.step)

    def end_epoch(self) -> None:
        """The learning-rate schedules advance once an epoch."""
        self._step_schedulers()

    def save(self) -> None:
        """``save_checkpoint``."""
        self.save_checkpoint()

    # ------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self) -> dict[str, float] | None:
        """Reconstruction L1 on fixed pairs of ``test/`` (or ``train/`` when there is no test split); rank 0."""
        if self.rank != 0 or self.options.validate_every == 0:  # 0: never, as for depth training
            return None
        if self._validation_set is None:
            split = "test" if (Path(self.options.data) / "test").is_dir() else "train"
            data = FramesDataset(self.options.data, split, self.config.data, augment=False, seed=12345)
            count = min(self.options.validation_pairs, max(len(data), 1) * 4)
            items = [data[i] for i in range(count)]
            self._validation_set = (
                torch.stack([it["source"] for it in items]).to(self.device),
                torch.stack([it["driving"] for it in items]).to(self.device),
            )
        source, driving = self._validation_set
        was_training = self.generator.training
        self.generator_objective.eval()
        total = 0.0
        for start in range(0, source.shape[0], 4):
            generated = self.generator_objective.generate(source[start : start + 4], driving[start : start + 4])
            total += float((generated["prediction"] - driving[start : start + 4]).abs().mean()) * len(
                source[start : start + 4]
            )
        self.generator_objective.train(was_training)
        record = {"step": self.step, "val_l1": total / source.shape[0]}
        self.validation.append(record)
        self.log.scalars(record)
        return record

    # ------------------------------------------------------------------ step
    def equivariance_transform(self, batch: int) -> EquivarianceTransform:
        """This step's random warp, drawn from the seed, the step and the rank (so a resumed run redraws it)."""
        return EquivarianceTransform.random(
            batch,
            self.config.train.transform,
            torch.Generator().manual_seed(self.options.seed * 1_000_003 + self.step * self.world + self.rank),
            self.device,
        )

    def train_step(self, source: torch.Tensor, driving: torch.Tensor) -> dict[str, float]:
        """One generator + keypoint-detector update, then one discriminator update."""
        transform = self.equivariance_transform(source.shape[0])
        self.discriminator.requires_grad_(False)
        scaler = self.scalers["generator"]
        with autocast(self.options.precision, self.device):
            losses, generated = self.generator_step(source, driving, transform)
            loss = sum(losses.values())
        self._backward_and_update(loss, (self.optimizer_generator, self.optimizer_kp_detector), scaler)
        self.optimizer_generator.zero_grad(set_to_none=True)
        self.optimizer_kp_detector.zero_grad(set_to_none=True)
        self.discriminator.requires_grad_(True)
        values = {k: float(v.detach()) for k, v in losses.items()}
        if self.trains_discriminator:
            scaler = self.scalers["discriminator"]
            self.optimizer_discriminator.zero_grad(set_to_none=True)
            with autocast(self.options.precision, self.device):
                disc = self.discriminator_step(driving, generated)
            self._backward_and_update(sum(disc.values()), (self.optimizer_discriminator,), scaler)
            self.optimizer_discriminator.zero_grad(set_to_none=True)
            values.update({k: float(v.detach()) for k, v in disc.items()})
        if self.world > 1 and self.device.type != "cuda":
            self._average_norm_statistics()
        self._last = (source, driving, generated)
        return values

    def _backward_and_update(
        self, loss: torch.Tensor, optimizers: tuple[torch.optim.Optimizer, ...], scaler: torch.amp.GradScaler
    ) -> None:
        """Backward pass and the optimisers' updates: inside the pass where the trainer can, after it otherwise."""
        if self.steps_in_backward:
            with stepping_in_backward(optimizers):
                loss.backward()
            return
        scaler.scale(loss).backward()
        for optimizer in optimizers:
            scaler.step(optimizer)
        scaler.update()

    @torch.no_grad()
    def _average_norm_statistics(self) -> None:
        """SyncBatchNorm needs CUDA; on CPU (gloo), average the running statistics after each step
        so every rank holds the same model."""
        for module in (self.kp_detector, self.generator):
            for name, buffer in unwrap(module).named_buffers():
                if name.endswith(("running_mean", "running_var")):
                    dist.all_reduce(buffer)
                    buffer /= self.world

    @property
    def trains_discriminator(self) -> bool:
        """Whether the adversarial terms are on, so the discriminator takes optimiser steps."""
        return self.config.train.loss_weights.generator_gan != 0

    def _step_schedulers(self) -> None:
        """Advance every learning-rate schedule by one epoch."""
        for name, scheduler in self.schedulers.items():
            with warnings.catch_warnings():
                if name == "discriminator" and not self.trains_discriminator:
                    # Its optimiser never steps; the schedule still advances so a run's rates do
                    # not depend on the loss weights.
                    warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
                scheduler.step()

    def run(self) -> TrainResult:
        """Train (``TrainingLoop.train_loop``); checkpoints every ``checkpoint_every`` steps and at the end."""
        seconds = self.train_loop()
        return TrainResult(
            unwrap(self.kp_detector), unwrap(self.generator), self.discriminator, self.step, self.validation, seconds
        )


def train(options: TrainOptions, config: Config | None = None) -> TrainResult:
    """Run ``dagan train``; a run that fails before writing anything leaves no empty run folder."""
    with removed_if_failed_empty(options.out):
        return Trainer(options, config).run()


def describe(result: TrainResult) -> str:
    """A one-line summary of a finished run."""
    first = result.validation[0]["val_l1"] if result.validation else math.nan
    last = result.validation[-1]["val_l1"] if result.validation else math.nan
    return f"trained to step {result.step} in {result.seconds:.0f} s; validation L1 {first:.4f} -> {last:.4f}"
