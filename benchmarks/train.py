"""Training benchmark on this machine: ``dagan train``'s step against the original's, side by side.

Run: python benchmarks/train.py [--steps 4] [--rounds 2] [--all-modes]

1. The issue's bar: the full vox-adv-256 model (15 keypoints, batch 2, 256x256) with the ResNet-50
   depth network the original training script loads, random weights (the ImageNet VGG19 weights
   cannot be downloaded here; the cost is the same). The paths run on the same networks, batch and
   random warps, each in its own process so that peak RSS is its own, alternating for
   ``--rounds`` rounds:
   - *plain*: one step written the way the original's ``train.py``, ``GeneratorFullModel`` and
     ``DiscriminatorFullModel`` compute it: each depth map on its own, all four disparity scales
     decoded, anti-aliased downsampling that blurs every pixel, keypoint heatmaps whose far
     tails stay subnormal floats, the whole attention matrix, the
     discriminator's leaky ReLUs out of place and its weights left trainable during the
     generator update (their gradients are computed, then zeroed), VGG19 keeping its float maps
     and convolution inputs for the backward pass, a second pass of the
     discriminator on the real frames for its own update, torch's default Adam (``torch.optim``)
     and torchvision imported, as the original has them;
   - *dagan*: ``Trainer.train_step``, in a process whose heap keeps the memory each step frees,
     as ``dagan train`` sets it up (``dagan.pipelines.memory.keep_freed_memory``);
   - *low-memory*: the same as ``dagan train --low-memory`` (``dagan.pipelines.recompute``);
   - *dagan+tcmalloc*, *low-memory+tcmalloc*: those two under ``dagan train --allocator tcmalloc``
     (the worker re-runs itself with tcmalloc preloaded), where a libtcmalloc_minimal is found.
   Prints s/step and peak RSS of each run, for each dagan path the speed ratio (plain s/step /
   its s/step, medians) and the memory ratio (its peak / plain peak), and the largest relative
   difference between its losses and the plain path's at the first step (the same weights) and
   at any step.
2. configs/tiny-64.yaml at batch 8 with the depth-aware attention in its three modes (see
   ``dagan.nn.attention``); ``--all-modes`` adds the full model in each mode.
The first step of each run is a warm-up and is not timed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parents[1]
#: The depth network of the original training script (and of the training golden).
FULL_DEPTH_LAYERS = 50


def _config(name: str, batch: int):
    from dagan.config import load_config

    if name == "tiny":
        config = load_config(REPO / "configs" / "tiny-64.yaml")
    else:
        config = load_config()
        config.model = config.model.with_num_kp(15)
        config.model.depth = dataclasses.replace(config.model.depth, num_layers=FULL_DEPTH_LAYERS)
    config.train = dataclasses.replace(config.train, batch_size=batch)
    return config


def write_fixtures(root: Path, name: str) -> None:
    """A small synthetic data set, random depth weights and random VGG19 weights for one configuration."""
    from _fixtures import randomise_

    from dagan.data.synth import write_dataset
    from dagan.io.checkpoint import write_depth_directory
    from dagan.nn.face_depth import FaceDepthNetwork
    from dagan.nn.vgg import VGG19Features

    config = _config(name, 1)
    size = config.data.frame_shape[0]
    write_dataset(root / f"synth_{name}", identities=3, clips_per_identity=1, frames=8, size=size, quiet=True)
    generator = torch.Generator().manual_seed(0)
    depth = randomise_(FaceDepthNetwork(config.model.depth), generator)
    write_depth_directory(
        root / f"depth_{name}",
        {"depth_encoder": depth.encoder.state_dict(), "depth_decoder": depth.decoder.state_dict()},
    )
    if not (root / "vgg19.pth").exists():
        torch.save(randomise_(VGG19Features(), generator).state_dict(), root / "vgg19.pth")


def original_step(trainer, source: torch.Tensor, driving: torch.Tensor, transform) -> dict[str, float]:
    """One optimiser step computed the way the original code computes it (see the module docstring)."""
    from dagan.pipelines.objective import _pairwise_distances

    objective = trainer.generator_objective
    kp_detector, generator, discriminator = trainer.kp_detector, trainer.generator, trainer.discriminator
    vgg, depth, pyramid = objective.vgg, objective.depth, objective.pyramid
    train = trainer.config.train
    w = train.loss_weights

    def depth_of(image: torch.Tensor) -> torch.Tensor:
        return depth(image, all_scales=True)[0]

    def keypoints(image: torch.Tensor):
        return kp_detector(torch.cat([image, depth_of(image)], dim=1))

    kp_source, kp_driving = keypoints(source), keypoints(driving)
    generated = generator(source, kp_driving, kp_source, depth_of(source), depth_of(driving))
    real, fake = pyramid(driving), pyramid(generated["prediction"])
    losses = {"perceptual": 0.0, "feature_matching": 0.0}
    for scale in train.scales:
        if train.perceptual_backbone != "vgg19":  # the tiny configuration's L1 stand-in, which has no VGG19
            losses["perceptual"] = losses["perceptual"] + sum(w.perceptual) * (fake[scale] - real[scale]).abs().mean()
            continue
        fake_features, real_features = vgg(fake[scale]), vgg(real[scale])
        for weight, a, b in zip(w.perceptual, fake_features, real_features, strict=False):
            losses["perceptual"] = losses["perceptual"] + weight * (a - b.detach()).abs().mean()
    kp_value = kp_driving.value.detach()
    maps_fake, maps_real = discriminator(fake, kp_value), discriminator(real, kp_value)
    losses["gen_gan"] = sum(w.generator_gan * ((1 - maps_fake[k][1]) ** 2).mean() for k in maps_fake)
    for key in maps_fake:
        for weight, a, b in zip(w.feature_matching, maps_real[key][0], maps_fake[key][0], strict=False):
            losses["feature_matching"] = losses["feature_matching"] + weight * (a - b).abs().mean()
    aligned = generator.dense_motion_network.config.align_corners
    kp_transformed = keypoints(transform.transform_frame(driving, aligned))
    warped = transform.warp_coordinates(kp_transformed.value)
    losses["equivariance_value"] = w.equivariance_value * (kp_driving.value - warped).abs().mean()
    jacobian = torch.matmul(transform.jacobian(kp_transformed.value), kp_transformed.jacobian)
    product = torch.matmul(torch.linalg.inv(kp_driving.jacobian), jacobian)
    eye = torch.eye(2).view(1, 1, 2, 2)
    losses["equivariance_jacobian"] = w.equivariance_jacobian * (eye - product).abs().mean()
    k = kp_source.value.shape[1]

    def spread(value: torch.Tensor) -> torch.Tensor:
        return (1 - torch.sign(_pairwise_distances(value) + torch.eye(k) * 0.2 - 0.2)).mean()

    losses["kp_distance"] = w.kp_distance * (spread(kp_source.value) + spread(kp_driving.value))
    sum(value.mean() for value in losses.values()).backward()
    for optimizer in (trainer.optimizer_generator, trainer.optimizer_kp_detector):
        optimizer.step()
        optimizer.zero_grad()
    trainer.optimizer_discriminator.zero_grad()
    maps_real = discriminator(pyramid(driving), kp_value)
    maps_fake = discriminator(pyramid(generated["prediction"].detach()), kp_value)
    disc = sum(w.discriminator_gan * ((1 - maps_real[k][1]) ** 2 + maps_fake[k][1] ** 2).mean() for k in maps_real)
    disc.backward()
    trainer.optimizer_discriminator.step()
    trainer.optimizer_discriminator.zero_grad()
    return {**{key: float(value) for key, value in losses.items()}, "disc_gan": float(disc)}


def prepare(root: Path, config: str, batch: int, path: str, attention: str = "auto"):
    """A trainer set up for one path of the module docstring, as a function that runs one step.

    The function draws the step's equivariance transform, runs the step and returns its seconds
    (the transform's draw left out) and losses. Call this first in a fresh process: a path with an
    allocator re-runs the process under it, and the plain path patches the networks' classes.
    """
    from _fixtures import original_anti_alias, original_discriminator_block, original_kp2gaussian

    from dagan.nn import dense_motion, discriminator
    from dagan.nn.common import AntiAliasDownsample
    from dagan.nn.discriminator import DiscriminatorBlock
    from dagan.nn.vgg import VGG19Features
    from dagan.pipelines.memory import keep_freed_memory, run_under_allocator
    from dagan.pipelines.train import Trainer, TrainOptions

    path, _, allocator = path.partition("+")
    if path != "plain":
        keep_freed_memory()  # as the `dagan train` command does before anything else
        run_under_allocator(allocator or "default", [sys.executable, *sys.argv])
    options = TrainOptions(
        data=root / f"synth_{config}",
        out=root / f"run_{config}_{path}_{allocator}_{attention}",
        depth_weights=root / f"depth_{config}",
        vgg_weights=root / "vgg19.pth",
        workers=0,
        quiet=True,
        low_memory=path == "low-memory",
    )
    trainer = Trainer(options, _config(config, batch))
    trainer.generator.AttnModule.mode = "matrix" if path == "plain" else attention
    if path == "plain":
        AntiAliasDownsample.forward = original_anti_alias
        DiscriminatorBlock.forward = original_discriminator_block
        dense_motion.kp2gaussian = discriminator.kp2gaussian = original_kp2gaussian
        VGG19Features._frozen_forward = VGG19Features._layer_by_layer  # autograd keeps all it keeps
        trainer.discriminator.requires_grad_(True)
        # The original's optimisers, and its import of torchvision (for VGG19): both import
        # torch._dynamo, which dagan's training process does not (dagan.pipelines.optim).
        import torchvision  # noqa: F401

        for name in ("generator", "kp_detector", "discriminator"):
            optimizer = getattr(trainer, f"optimizer_{name}")
            group = optimizer.param_groups[0]
            replaced = torch.optim.Adam(group["params"], lr=group["lr"], betas=group["betas"])
            setattr(trainer, f"optimizer_{name}", replaced)
    trainer.start_training()
    data = next(iter(trainer.loader()))

    def run_step() -> tuple[float, dict[str, float]]:
        transform = trainer.equivariance_transform(data["source"].shape[0])
        started = time.perf_counter()
        if path == "plain":
            losses = original_step(trainer, data["source"], data["driving"], transform)
        else:
            losses = trainer.train_step(data["source"], data["driving"])
        seconds = time.perf_counter() - started
        trainer.step += 1
        return seconds, losses

    return run_step


def worker(args: argparse.Namespace) -> None:
    """Time ``args.steps`` optimiser steps of one configuration and path; prints a JSON line."""
    run_step = prepare(Path(args.root), args.config, args.batch, args.path, args.attention)
    times, losses = [], []
    for _ in range(args.steps):
        seconds, step_losses = run_step()
        times.append(seconds)
        losses.append(step_losses)
    steady = times[1:] or times
    print(json.dumps({"seconds_per_step": sum(steady) / len(steady),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "losses": losses}))  # fmt: skip


def _run(root: str, config: str, batch: int, steps: int, path: str, attention: str = "auto") -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", "--root", root, "--config", config, "--batch", str(batch),
         "--steps", str(steps), "--path", path, "--attention", attention],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _largest_loss_difference(a: list[dict], b: list[dict]) -> float:
    return max(abs(x[k] - y[k]) / max(abs(y[k]), 1e-8) for x, y in zip(a, b, strict=True) for k in y if k in x)


def main() -> None:
    """Run the side-by-side comparison and the attention-mode table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="steps per run, the first untimed")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the full model's three paths")
    parser.add_argument("--all-modes", action="store_true", help="also time the full model in every attention mode")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--config", default="tiny", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--path", default="dagan", help=argparse.SUPPRESS)
    parser.add_argument("--attention", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    from dagan.pipelines.memory import find_tcmalloc

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, {args.steps} steps (first is warm-up)")
    with tempfile.TemporaryDirectory(prefix="dagan-train-bench-") as tmp:
        write_fixtures(Path(tmp), "full")
        write_fixtures(Path(tmp), "tiny")
        print(f"vox-adv-256 (256x256, 15 kp, ResNet-{FULL_DEPTH_LAYERS} depth), batch 2, side by side:")
        paths = ("plain", "dagan", "low-memory")
        if find_tcmalloc() is not None:
            paths += ("dagan+tcmalloc", "low-memory+tcmalloc")
        else:
            print("  (no libtcmalloc_minimal here: the --allocator tcmalloc paths are left out)")
        runs: dict[str, list[dict]] = {path: [] for path in paths}
        for round_ in range(args.rounds):
            for path in paths:
                r = _run(tmp, "full", 2, args.steps, path)
                runs[path].append(r)
                print(f"  round {round_ + 1}  {path:<19} {r['seconds_per_step']:6.2f} s/step  "
                      f"{r['peak_rss_mb']:6.0f} MB peak RSS", flush=True)  # fmt: skip
        plain_s = statistics.median(r["seconds_per_step"] for r in runs["plain"])
        plain_mb = statistics.median(r["peak_rss_mb"] for r in runs["plain"])
        for path in paths[1:]:
            path_s = statistics.median(r["seconds_per_step"] for r in runs[path])
            path_mb = statistics.median(r["peak_rss_mb"] for r in runs[path])
            pairs = list(zip(runs[path], runs["plain"], strict=True))
            first = max(_largest_loss_difference(d["losses"][:1], p["losses"][:1]) for d, p in pairs)
            later = max(_largest_loss_difference(d["losses"], p["losses"]) for d, p in pairs)
            print(f"  {path}: speed {plain_s / path_s:.2f}x the plain path's steps/s ({1 / path_s:.4f} vs "
                  f"{1 / plain_s:.4f}), memory {path_mb / plain_mb:.2f}x its peak RSS ({path_mb:.0f} vs "
                  f"{plain_mb:.0f} MB)")  # fmt: skip
            # From the same weights, the first step's losses must agree to float rounding. Later
            # steps start from weights that already differ by rounding: Adam's first update is
            # close to lr * sign(gradient), so a gradient near zero that rounds the other way
            # moves its weight by the whole learning rate (and the keypoint-distance term is a
            # step function). They only show the drift.
            print(f"  {path}: losses, largest relative difference from the plain path's: first step "
                  f"{first:.1e}, any step {later:.1e}")  # fmt: skip
        rows = [("tiny", 8, mode) for mode in ("auto", "sdpa", "matrix")]
        if args.all_modes:
            rows = [("full", 2, mode) for mode in ("auto", "sdpa", "matrix")] + rows
        for name, batch, attention in rows:
            r = _run(tmp, name, batch, args.steps, "dagan", attention)
            label = "vox-adv-256, batch 2" if name == "full" else "tiny-64 (64x64), batch 8"
            print(f"{label + ', ' + attention + ' attention':<44} {1 / r['seconds_per_step']:7.3f} steps/s "
                  f"{r['seconds_per_step']:7.2f} s/step {r['peak_rss_mb']:7.0f} MB peak RSS", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
