"""Animate benchmark: exact fast path vs the original-style per-frame loop, stages, and memory.

Run: python benchmarks/animate.py [--fps-frames 48] [--short 40] [--long 400] [--device cpu]

Measures, on the full vox-adv-256 model with deterministic random weights:
- frames/s of ``Animator`` (fp32, exact: fused networks, channels-last, cached source) at
  batch 1 and batch 8, and of a per-frame plain path written the way the original demo loop
  works (unfused networks, explicit attention matrix, source re-encoded every frame, batch 1),
  in the same run, with the ratio and the largest difference between their frames (each path
  gets one untimed warm-up frame or batch first);
- the time split over decode, depth, keypoints, generator and encode;
- peak RSS of the ``dagan animate`` command for a short and a long driving video (each in its own process);
- on a GPU, ``--precision`` and ``--compile`` modes with their PSNR against fp32.
Prints a table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fixtures import (  # noqa: E402
    original_anti_alias,
    original_kp2gaussian,
    source_image_path,
    write_looped_clip,
    write_random_model,
)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _plain_per_frame(root: Path, source: np.ndarray, frames: list[np.ndarray], device: str) -> tuple[list, float]:
    """The original demo's loop: one frame at a time, nothing cached but the source keypoints and depth.

    Computed the way the original computes: unfused NCHW networks, the whole attention matrix,
    the source re-encoded for every frame, disparity decoded at all four scales (scale 0 used),
    anti-aliased downsampling that blurs every pixel before subsampling and keypoint heatmaps
    whose far tails stay subnormal floats.
    """
    from dagan.config import InferenceConfig
    from dagan.io.image import resize_frame
    from dagan.motion import movement_scale, transfer_motion
    from dagan.nn import dense_motion
    from dagan.nn.common import AntiAliasDownsample
    from dagan.pipelines.animate import Animator

    AntiAliasDownsample.forward = original_anti_alias
    dense_motion.kp2gaussian = original_kp2gaussian

    animator = Animator.from_checkpoint(
        root / "model.pth.tar", root / "depth", device, InferenceConfig(fuse=False, channels_last=False)
    )
    animator.networks.generator.AttnModule.mode = "matrix"
    nets = animator.networks

    def depth_of(image: torch.Tensor) -> torch.Tensor:
        return nets.depth(image, all_scales=True)[0]

    def tensor(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(resize_frame(image, 256).transpose(2, 0, 1)[None].copy()).to(animator.device)

    outputs = []
    with torch.no_grad():  # one untimed frame: first-call set-up (oneDNN primitives) is not throughput
        warm = tensor(frames[0])
        warm_depth = depth_of(warm)
        warm_kp = nets.kp_detector(torch.cat([warm, warm_depth], 1))
        nets.generator(warm, warm_kp, warm_kp, warm_depth, warm_depth)
    start = time.perf_counter()
    with torch.no_grad():
        source_t = tensor(source)
        source_depth = depth_of(source_t)
        kp_source = nets.kp_detector(torch.cat([source_t, source_depth], 1))
        kp_initial = None
        for frame in frames:
            driving = tensor(frame)
            depth = depth_of(driving)
            kp_driving = nets.kp_detector(torch.cat([driving, depth], 1))
            if kp_initial is None:
                kp_initial, scale = kp_driving, movement_scale(kp_source, kp_driving)
            kp = transfer_motion(kp_source, kp_driving, kp_initial, True, scale)
            out = nets.generator(source_t, kp, kp_source, source_depth, depth)
            outputs.append(out["prediction"][0].permute(1, 2, 0).cpu().numpy())
    _sync(animator.device)
    return outputs, time.perf_counter() - start


def _stage_split(root: Path, source: np.ndarray, clip: Path, device: str) -> dict[str, float]:
    """Seconds per frame in each stage of the exact path at batch 1, run one after another."""
    from fractions import Fraction

    from dagan.io.video import Mp4Writer, iter_frames, probe_video
    from dagan.motion import transfer_motion
    from dagan.pipelines.animate import Animator

    animator = Animator.from_checkpoint(root / "model.pth.tar", root / "depth", device)
    nets, dev = animator.networks, animator.device
    prepared = animator.prepare_source(source)
    times = dict.fromkeys(("decode", "depth", "keypoints", "generator", "encode"), 0.0)
    start = time.perf_counter()
    frames = list(iter_frames(probe_video(clip)))
    times["decode"] = time.perf_counter() - start
    predictions = []
    kp_initial = None
    with torch.inference_mode():
        for frame in frames:
            images = animator._to_tensor([frame])
            t0 = time.perf_counter()
            depth = nets.depth(images)
            _sync(dev)
            t1 = time.perf_counter()
            kp_driving = nets.kp_detector(torch.cat([images, depth], 1))
            _sync(dev)
            t2 = time.perf_counter()
            kp_initial = kp_initial or kp_driving
            kp = transfer_motion(prepared.keypoints, kp_driving, kp_initial, True, 1.0)
            out = nets.generator(
                prepared.image, kp, prepared.keypoints, prepared.depth, depth, encoding=prepared.encoding
            )
            predictions.append(out["prediction"][0].permute(1, 2, 0).cpu().numpy())
            t3 = time.perf_counter()
            times["depth"] += t1 - t0
            times["keypoints"] += t2 - t1
            times["generator"] += t3 - t2
    start = time.perf_counter()
    writer = Mp4Writer(root / "stages.mp4", Fraction(25))
    for prediction in predictions:
        writer.write(prediction)
    writer.close()
    times["encode"] = time.perf_counter() - start
    return {k: v / len(frames) for k, v in times.items()}


def worker(args: argparse.Namespace) -> None:
    """One measurement; prints a JSON line."""
    from dagan.config import InferenceConfig
    from dagan.io.image import read_image
    from dagan.io.video import iter_frames, probe_video
    from dagan.pipelines.animate import Animator

    root = Path(args.root)
    source = read_image(args.source)
    if args.mode == "fast":
        inference = InferenceConfig(precision=args.precision, compile=args.compile)
        animator = Animator.from_checkpoint(root / "model.pth.tar", root / "depth", args.device, inference)
        frames = list(iter_frames(probe_video(args.clip)))
        # One untimed batch, as for the plain path: first-call set-up (and compilation) is not throughput.
        list(animator.animate(source, frames[: args.batch_size], batch_size=args.batch_size))
        _sync(animator.device)
        start = time.perf_counter()
        outputs = [f.prediction for f in animator.animate(source, frames, batch_size=args.batch_size)]
        _sync(animator.device)
        seconds = time.perf_counter() - start
        np.save(root / f"pred_{args.tag}.npy", np.stack(outputs))
        result = {"frames": len(outputs), "seconds": seconds}
    elif args.mode == "plain":
        frames = list(iter_frames(probe_video(args.clip)))
        outputs, seconds = _plain_per_frame(root, source, frames, args.device)
        np.save(root / "pred_plain.npy", np.stack(outputs))
        result = {"frames": len(outputs), "seconds": seconds}
    elif args.mode == "stages":
        result = _stage_split(root, source, Path(args.clip), args.device)
    else:  # what a user runs: the dagan animate command, in a process of its own
        argv = [sys.executable, "-m", "dagan", "animate", "--source", args.source, "--driving", args.clip,
                "--checkpoint", str(root / "model.pth.tar"), "--depth-weights", str(root / "depth"),
                "--output", str(root / f"out_{args.tag}.mp4"), "--device", args.device, "--quiet"]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(argv, check=True)
        seconds = time.perf_counter() - start
        frames = probe_video(root / f"out_{args.tag}.mp4").frame_count
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        result = {"frames": frames, "seconds": seconds, "peak_rss_mb": peak}
    result.setdefault("peak_rss_mb", _peak_rss_mb())
    print(json.dumps(result))


def _run(root: Path, **kwargs) -> dict:
    argv = [sys.executable, __file__, "--worker", "--root", str(root)]
    for key, value in kwargs.items():
        if value is True:
            argv.append(f"--{key.replace('_', '-')}")
        elif value is not False:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def main() -> None:
    """Orchestrate the measurements and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fps-frames", type=int, default=48)
    parser.add_argument("--short", type=int, default=40)
    parser.add_argument("--long", type=int, default=400)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--gpu-batches", default="1,8,16,32,64", help="batch sizes for the GPU mode table")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="fast", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    with tempfile.TemporaryDirectory(prefix="dagan-bench-") as tmp:
        root = Path(tmp)
        write_random_model(root)
        source = source_image_path(root)
        device_name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, full vox-adv-256 model, {device_name}")
        clip = write_looped_clip(root / "fps.mp4", args.fps_frames)
        common = {"clip": clip, "source": source, "device": args.device}
        rows = []
        plain = _run(root, mode="plain", **common)
        plain_fps = plain["frames"] / plain["seconds"]
        rows.append(("frames/s, per-frame plain path (original loop)", f"{plain_fps:.3f}"))
        reference = np.load(root / "pred_plain.npy")
        for batch in (1, 8):
            r = _run(root, mode="fast", batch_size=batch, tag=f"b{batch}", **common)
            fps = r["frames"] / r["seconds"]
            drift = np.abs(np.load(root / f"pred_b{batch}.npy") - reference).max()
            rows.append((f"frames/s, exact fp32, batch {batch}", f"{fps:.3f}  ({fps / plain_fps:.2f}x plain)"))
            rows.append((f"max |exact batch {batch} - plain|", f"{drift:.2e}"))
        stages = _run(root, mode="stages", **common)
        total = sum(v for k, v in stages.items() if k != "peak_rss_mb")
        for stage in ("decode", "depth", "keypoints", "generator", "encode"):
            rows.append((f"stage {stage}, s/frame", f"{stages[stage]:.4f}  ({100 * stages[stage] / total:.0f}%)"))
        if args.device == "cuda":
            for batch in (int(b) for b in args.gpu_batches.split(",")):
                for precision, compiled in (("fp32", False), ("bf16", False), ("fp16", False), ("fp32", True)):
                    tag = f"{precision}{'c' if compiled else ''}_b{batch}"
                    r = _run(root, mode="fast", batch_size=batch, precision=precision, compile=compiled, tag=tag,
                             **common)  # fmt: skip
                    psnr = _psnr(np.load(root / f"pred_{tag}.npy"), reference)
                    name = f"{precision}{' + compile' if compiled else ''}, batch {batch}"
                    rows.append((f"frames/s, {name}", f"{r['frames'] / r['seconds']:.1f}  (PSNR {psnr:.1f} dB)"))
        rss = {}
        for frames in (args.short, args.long):
            long_clip = write_looped_clip(root / f"clip{frames}.mp4", frames)
            r = _run(root, mode="rss", clip=long_clip, source=source, device=args.device, tag=frames)
            rss[frames] = r["peak_rss_mb"]
            rows.append((f"peak RSS, {frames} frames (dagan animate)", f"{r['peak_rss_mb']:.0f} MB"))
            fps = r["frames"] / r["seconds"]
            rows.append((f"frames/s end to end (process start to finish), {frames} frames", f"{fps:.3f}"))
        rows.append(("RSS growth long/short", f"{rss[args.long] / rss[args.short]:.3f}x"))
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
