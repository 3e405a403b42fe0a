"""Self-supervised face depth (monodepth2 style): the ``dagan train-depth`` trainer.

The depth network sees the target frame; a pose network sees (previous, target) and (target,
next) and predicts their relative motion and the camera intrinsics. The target is rebuilt from
each neighbour through the predicted depth and motion; the loss is the per-pixel minimum of the
photometric errors 0.85 (1 - SSIM) / 2 + 0.15 L1 over the neighbours, at four scales upsampled to
the input size, with auto-masking of pixels that do not move, plus an edge-aware smoothness term.
The geometry is in ``dagan.geometry``, the losses in ``depth_losses``, the evaluation in ``depth_eval``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dagan.config import MONODEPTH2_MOTION_SCALE, DepthConfig, check_depth_size
from dagan.data.dataset import FrameTripletDataset
from dagan.errors import DaganError, first_line
from dagan.geometry import MIN_DEPTH, backproject, disp_to_depth, intrinsics_from_fractions, pose_matrix, project
from dagan.io.atomic import atomic_output, removed_if_failed_empty
from dagan.io.checkpoint import load_strict, load_torch_file, write_depth_directory, write_torch
from dagan.io.colormap import colorize_disparity
from dagan.io.image import write_png
from dagan.io.plots import line_chart_image
from dagan.nn.face_depth import FaceDepthNetwork
from dagan.nn.pose import PoseNetwork
from dagan.options import DepthTrainOptions
from dagan.pipelines.depth_eval import evaluate_depth, has_ground_truth
from dagan.pipelines.depth_losses import min_reprojection, photometric_error, smoothness
from dagan.pipelines.distributed import unwrap
from dagan.pipelines.optim import Adam
from dagan.pipelines.training_loop import TrainingLoop

SMOOTHNESS_WEIGHT = 1e-3
#: Depths below this multiple of MIN_DEPTH count as pinned at the bound in the training log.
NEAR_BOUND_FACTOR = 1.1
SCALES = (0, 1, 2, 3)
#: Everything ``--resume`` needs, in one file written last: the weights files are the deliverables.
TRAIN_STATE = "train_state.pth"


@dataclass
class DepthTrainResult:
    """What a run produced."""

    depth: FaceDepthNetwork
    pose: PoseNetwork
    step: int
    seconds: float
    intrinsics: list[list[float]] = field(default_factory=list)
    #: ``{"step", "val_abs_rel", ...}`` records, oldest first; empty without ground truth.
    validation: list[dict[str, float]] = field(default_factory=list)


class DepthTrainer(TrainingLoop):
    """One self-supervised depth training run."""

    def __init__(self, options: DepthTrainOptions):
        check_depth_size(options.size)
        self._setup(options)
        torch.manual_seed(options.seed)
        config = DepthConfig(num_layers=options.layers, height=options.size, width=options.size)
        self.depth = FaceDepthNetwork(config).to(self.device)
        self.pose = PoseNetwork(config, options.translation_scale).to(self.device)
        self._open_run(TRAIN_STATE)
        if options.intrinsics is not None:
            # A known camera leaves the intrinsics head out of the loss (and out of DDP's gradient buckets).
            self.pose.decoder.intrinsics.requires_grad_(False)
        self.depth_step, self.pose_step = self.depth, self.pose
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            if self.device.type == "cuda":
                self.depth = nn.SyncBatchNorm.convert_sync_batchnorm(self.depth)
                self.pose = nn.SyncBatchNorm.convert_sync_batchnorm(self.pose)
            self.depth_step = nn.parallel.DistributedDataParallel(self.depth, device_ids=ids)
            self.pose_step = nn.parallel.DistributedDataParallel(self.pose, device_ids=ids)
        self.optimizer = Adam(list(self.depth.parameters()) + list(self.pose.parameters()), options.learning_rate)
        self.base_lr = options.learning_rate
        self.dataset = FrameTripletDataset(
            options.data, "train", options.size, options.stride, options.seed, cache_clips=options.cache_clips
        )
        if options.cache_clips:
            self.dataset.reader.preload(self.dataset.clips, quiet=options.quiet or self.rank != 0)
        self.intrinsics_sum, self.intrinsics_count = torch.zeros(3, 3), 0
        self.validation: list[dict[str, float]] = []
        #: abs-rel of the constant and untrained baselines on the validation frames (computed once).
        self.validation_baselines: dict[str, float] = {}
        self.can_validate = options.validate_every > 0 and has_ground_truth(options.data, "test")
        if options.resume:
            self._resume()

    # ------------------------------------------------------------------- state
    def save(self) -> None:
        """Write ``encoder.pth`` and ``depth.pth`` (original format), ``pose.pth`` and the resume state."""
        if self.rank != 0:
            return
        depth = unwrap(self.depth)
        groups = {"depth_encoder": depth.encoder.state_dict(), "depth_decoder": depth.decoder.state_dict()}
        write_depth_directory(
            self.out, groups, {"height": self.options.size, "width": self.options.size, "use_stereo": False}
        )
        write_torch(self.out / "pose.pth", unwrap(self.pose).state_dict())
        write_torch(
            self.out / TRAIN_STATE,
            {
                "depth": depth.state_dict(),
                "pose": unwrap(self.pose).state_dict(),
                "size": self.options.size,
                "layers": self.options.layers,
                "translation_scale": self.options.translation_scale,
                "optimizer": self.optimizer.state_dict(),
                "base_lr": self.base_lr,
                "step": self.step,
                "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch,
                "intrinsics_sum": self.intrinsics_sum,
                "intrinsics_count": self.intrinsics_count,
                "validation": self.validation,
                "validation_baselines": self.validation_baselines,
            },
        )
        with atomic_output(self.out / "intrinsics.json") as tmp:
            tmp.write_text(json.dumps({"intrinsics": self.mean_intrinsics(), "size": self.options.size}))

    def mean_intrinsics(self) -> list[list[float]]:
        """The learned camera matrix, averaged over training (pixels at the training size)."""
        if self.intrinsics_count == 0:
            return []
        return (self.intrinsics_sum / self.intrinsics_count).tolist()

    def _resume(self) -> None:
        path = self.out / TRAIN_STATE
        state = load_torch_file(path)
        if not isinstance(state, dict) or "depth" not in state:
            raise DaganError(f"--resume: {path} was not written by dagan train-depth")
        if (state.get("size"), state.get("layers")) != (self.options.size, self.options.layers):
            raise DaganError(
                f"--resume: the run used --size {state.get('size')} --layers {state.get('layers')}; pass the same"
            )
        # Runs saved before the option existed used monodepth2's 0.01.
        saved_scale = state.get("translation_scale", MONODEPTH2_MOTION_SCALE)
        if saved_scale != self.options.translation_scale:
            raise DaganError(f"--resume: the run used --translation-scale {saved_scale}; pass the same")
        load_strict(unwrap(self.depth), state["depth"], "the depth network", str(path))
        load_strict(unwrap(self.pose), state["pose"], "the pose network", str(path))
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, ValueError) as exc:
            raise DaganError(f"--resume: the optimiser state in {path} does not fit ({first_line(exc)})") from exc
        self.step, self.epoch, self.step_in_epoch = state["step"], state["epoch"], state["step_in_epoch"]
        self.intrinsics_sum, self.intrinsics_count = state["intrinsics_sum"], state["intrinsics_count"]
        self.validation = list(state.get("validation", []))
        self.validation_baselines = dict(state.get("validation_baselines", {}))
        # Runs saved before the base rate was stored used their optimiser's rate.
        self.base_lr = state.get("base_lr", self.optimizer.param_groups[0]["lr"])
        if self.options.override_learning_rate:
            self.base_lr = self.options.learning_rate

    # ------------------------------------------------------- what the loop asks of a trainer
    @property
    def batch_size(self) -> int:
        """Frame triplets per step and rank."""
        return self.options.batch_size

    @property
    def epochs(self) -> int:
        """``--epochs``."""
        return self.options.epochs

    def start_training(self) -> None:
        """Training mode for the depth and pose networks."""
        self.depth.train()
        self.pose.train()

    def step_batch(self, batch: dict) -> dict[str, float]:
        """One Adam step on the photometric loss; the learning rate drops for the last quarter of the run."""
        options = self.options
        frames = batch["frames"].to(self.device, non_blocking=True)
        noise = torch.Generator().manual_seed(options.seed * 7919 + self.step)
        decayed = self.step >= options.lr_decay_at * self.total_steps
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr * (0.1 if decayed else 1.0)
        loss, info = self.losses(frames, noise)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.intrinsics_sum += info["intrinsics"].mean(0).cpu()
        self.intrinsics_count += 1
        self._last = (frames.detach(), info["disparity"])
        return {"loss": float(loss.detach()), "automask": info["automask"], "near_bound": info["near_bound"]}

    def log_record(self, values: dict[str, float]) -> dict:
        """The loss, its diagnostics and the learning rate."""
        return {"step": self.step, "epoch": self.epoch, **values, "lr": self.optimizer.param_groups[0]["lr"]}

    def progress(self, values: dict[str, float]) -> dict[str, str]:
        """The loss."""
        return {"loss": f"{values['loss']:.4f}"}

    # -------------------------------------------------------------------- step
    def losses(self, frames: torch.Tensor, noise: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Total loss and diagnostics for a batch of triplets (B, 3, 3, H, W): previous, target, next."""
        previous, target, following = frames[:, 0], frames[:, 1], frames[:, 2]
        h, w = target.shape[2:]
        disparities = self.depth_step(target, all_scales=True)
        # Both pairs in one forward: DDP reduces a module's gradients once per forward.
        motion = self.pose_step(torch.cat([previous, target]), torch.cat([target, following]))
        motion_previous = {key: value[: len(target)] for key, value in motion.items()}
        motion_next = {key: value[len(target) :] for key, value in motion.items()}
        if self.options.intrinsics is None:
            intrinsics = (motion_previous["intrinsics"] + motion_next["intrinsics"]) / 2
        else:
            intrinsics = intrinsics_from_fractions(self.options.intrinsics, h, w, target).expand(target.shape[0], 3, 3)
        # Transforms from the target camera into each neighbour's.
        to_previous = pose_matrix(motion_previous["axisangle"], motion_previous["translation"], invert=True)
        to_next = pose_matrix(motion_next["axisangle"], motion_next["translation"])
        identity = None
        if self.options.automask:
            identity = torch.cat([photometric_error(previous, target), photometric_error(following, target)], 1)
        total = 0.0
        mask = None
        for scale in SCALES:
            disp = disparities[scale]
            depth = disp_to_depth(F.interpolate(disp, size=(h, w), mode="bilinear", align_corners=False))
            points = backproject(depth, intrinsics)
            errors = []
            for source, transform in ((previous, to_previous), (following, to_next)):
                grid = project(points, intrinsics, transform, h, w)
                warped = F.grid_sample(source, grid, padding_mode="border", align_corners=True)
                errors.append(photometric_error(warped, target))
            per_pixel, mask = min_reprojection(torch.cat(errors, 1), identity, noise)
            image = F.interpolate(target, size=disp.shape[2:], mode="bilinear", align_corners=False)
            total = total + per_pixel.mean() + SMOOTHNESS_WEIGHT * smoothness(disp, image) / (2**scale)
        total = total / len(SCALES)
        return total, {
            "automask": float(mask.mean()),
            # Depth pinned at the near bound has a vanishing gradient (see PoseDecoder); ``depth`` is
            # the loop's last, the coarsest scale upsampled to the input size.
            "near_bound": float((depth < NEAR_BOUND_FACTOR * MIN_DEPTH).float().mean()),
            "disparity": disparities[0].detach(),
            "intrinsics": intrinsics.detach(),
        }

    def validate(self) -> dict[str, float] | None:
        """Depth errors on test/ against its ground truth, logged and charted; None without ground truth."""
        if not self.can_validate or self.rank != 0:
            return None
        options = self.options
        report = evaluate_depth(
            unwrap(self.depth), options.data, "test", options.validation_frames, options.size,
            baselines=not self.validation_baselines,
        )  # fmt: skip
        self.depth.train()
        if not self.validation_baselines:
            self.validation_baselines = {name: report[name]["abs_rel"] for name in ("constant", "untrained")}
        record = {"step": self.step, **{f"val_{key}": value for key, value in report["model"].items()}}
        self.validation.append(record)
        self.log.scalars(record)
        chart = line_chart_image(
            [r["step"] for r in self.validation],
            {"network": [r["val_abs_rel"] for r in self.validation]},
            "abs-rel on test/ (face pixels, median-scaled)",
            self.validation_baselines,
        )
        write_png(self.out / "validation.png", chart)
        return record

    def draw(self, frames: torch.Tensor, disparity: torch.Tensor) -> None:
        """Target frames beside their colour-mapped disparity."""
        rows = []
        for i in range(min(frames.shape[0], 4)):
            image = frames[i, 1].permute(1, 2, 0).cpu().numpy()
            rows.append(np.concatenate([image, colorize_disparity(disparity[i, 0].cpu().numpy())], axis=1))
        self.log.image("disparity", np.concatenate(rows, axis=0), self.step)

    def run(self) -> DepthTrainResult:
        """Train until ``max_steps`` or ``epochs`` (``TrainingLoop.train_loop``), saving now and then and at the end."""
        seconds = self.train_loop()
        return DepthTrainResult(
            unwrap(self.depth), unwrap(self.pose), self.step, seconds, self.mean_intrinsics(), list(self.validation)
        )


def train_depth(options: DepthTrainOptions) -> DepthTrainResult:
    """Run ``dagan train-depth``; a run that fails before writing anything leaves no empty run folder."""
    with removed_if_failed_empty(options.out):
        return DepthTrainer(options).run()
