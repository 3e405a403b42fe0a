"""Command line: a thin layer over the pipelines. Every user error is one line and exit code 2."""

from __future__ import annotations

import argparse
import errno
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from dagan import __version__
from dagan.errors import DaganError, first_line

if TYPE_CHECKING:
    from dagan.config import InferenceConfig

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
#: No device holds a batch this large; a bound keeps absurd values from reaching the allocator.
MAX_BATCH_SIZE = 4096
_ENVIRONMENT_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENAMETOOLONG,
    errno.EFBIG,
    errno.EIO,
    errno.ENXIO,
    errno.ELOOP,
}


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _batch_size(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_BATCH_SIZE}, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def _intrinsics(text: str) -> tuple[float, float, float, float]:
    parts = text.split(",")
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"needs four numbers FX,FY,CX,CY, got {text!r}")
    values = tuple(_finite_float(part) for part in parts)
    if not (values[0] > 0 and values[1] > 0):
        raise argparse.ArgumentTypeError(f"needs finite numbers and focal lengths above 0, got {text!r}")
    return values


def _even_size(text: str) -> int:
    value = _whole_number(text)
    if value < 16 or value % 2:
        raise argparse.ArgumentTypeError(f"must be an even number of pixels, at least 16, got {value}")
    return value


def _depth_size(text: str) -> int:
    from dagan.config import check_depth_size

    value = _whole_number(text)
    try:
        check_depth_size(value)
    except DaganError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _path(value: str | None) -> Path | None:
    """An optional path option as a Path (None when not given)."""
    return Path(value) if value else None


def _add_device(p: argparse.ArgumentParser) -> None:
    from dagan.config import DEVICES

    p.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="where the networks run (auto: CUDA, then Apple MPS, then CPU)",
    )


def _add_max_pixels(p: argparse.ArgumentParser) -> None:
    from dagan.config import DEFAULT_MAX_PIXELS

    p.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"refuse images and video frames of more than N pixels before decoding them "
        f"(default {DEFAULT_MAX_PIXELS:,}; a guard against decompression bombs)",
    )


def _add_precision_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="arithmetic precision (default fp32, exact; bf16/fp16 run under autocast, fp16 on GPU only)",
    )
    p.add_argument("--compile", action="store_true", help="compile the networks with torch.compile (slow first call)")


def _cmd_animate(args: argparse.Namespace) -> int:
    from dagan.config import InferenceConfig
    from dagan.pipelines.animate import animate_files
    from dagan.pipelines.demo import BUNDLED_MODEL_NOTICE, weights_or_bundled

    checkpoint, depth_weights = weights_or_bundled(args.checkpoint, args.depth_weights)
    if args.checkpoint is None:
        print(BUNDLED_MODEL_NOTICE, file=sys.stderr)

    inference = InferenceConfig(
        precision=args.precision, compile=args.compile, backend=args.backend, cpu_workers=args.cpu_workers
    )
    if args.crop:
        return _animate_footage(args, checkpoint, depth_weights, inference)
    for flag in ("paste_back", "face", "mask_feather", "detect_every", "detect_size"):
        if getattr(args, flag) is not None and getattr(args, flag) is not False:
            raise DaganError(f"--{flag.replace('_', '-')} works with --crop only")
    report = animate_files(
        args.source[0] if len(args.source) == 1 else args.source,
        args.driving,
        checkpoint,
        depth_weights,
        args.output,
        relative=args.relative,
        adapt_scale=args.adapt_scale,
        best_frame=args.best_frame,
        find_best_frame=args.find_best_frame,
        reference=args.reference,
        device=args.device,
        batch_size=args.batch_size,
        save_depth=args.save_depth,
        side_by_side_output=args.side_by_side,
        save_side_by_side=args.save_side_by_side,
        quiet=args.quiet,
        inference=inference,
        overwrite=args.overwrite,
        depth_style=args.depth_style,
        smooth=args.smooth,
    )
    fps = report.frames / report.seconds if report.seconds > 0 else float("nan")
    extra = f", depth video {report.depth_output}" if report.depth_output else ""
    extra += f", side-by-side video {report.side_by_side_output}" if report.side_by_side_output else ""
    print(f"wrote {report.frames} frames to {report.output}{extra} ({report.seconds:.1f} s, {fps:.2f} frames/s)")
    return 0


def _animate_footage(
    args: argparse.Namespace, checkpoint: str, depth_weights: str | None, inference: InferenceConfig
) -> int:
    from dagan.pipelines.crop import crop_config
    from dagan.pipelines.footage import animate_footage

    if len(args.source) > 1:
        raise DaganError("--crop animates one source photo (use --face all for several faces in it)")
    unsupported = {
        "--reference": args.reference is not None,
        "--best-frame": args.best_frame is not None,
        "--find-best-frame": args.find_best_frame,
        "--save-depth": args.save_depth is not None,
        "--side-by-side": args.side_by_side,
        "--save-side-by-side": args.save_side_by_side is not None,
    }
    given = [flag for flag, on in unsupported.items() if on]
    if given:
        raise DaganError(f"{given[0]} does not work with --crop: each driving clip starts from its own first frame")
    if args.mask_feather is not None and not args.paste_back:
        raise DaganError("--mask-feather works with --paste-back only")
    report = animate_footage(
        args.source[0],
        args.driving,
        checkpoint,
        depth_weights,
        args.output,
        paste_back=args.paste_back,
        face=args.face,
        mask_feather=args.mask_feather,
        crop=crop_config(**_crop_flags(args)),
        relative=args.relative,
        adapt_scale=args.adapt_scale,
        device=args.device,
        batch_size=args.batch_size,
        smooth=args.smooth,
        quiet=args.quiet,
        inference=inference,
    )
    fps = report.frames / report.seconds if report.seconds > 0 else float("nan")
    print(f"wrote {report.frames} frames to {report.output} ({report.seconds:.1f} s, {fps:.2f} frames/s)")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from dagan.pipelines.convert import convert

    print(convert(args.input, args.output, args.depth_weights, args.half, args.inference_only))
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from dagan.data.synth import write_dataset

    report = write_dataset(
        args.out,
        identities=args.identities,
        clips_per_identity=args.clips_per_identity,
        frames=args.frames,
        size=args.size,
        seed=args.seed,
        frame_format=args.format,
        still_head=args.still_head,
        quiet=args.quiet,
    )
    print(
        f"wrote {report.clips} clips ({report.frames} frames) to {args.out} in {report.seconds:.1f} s "
        f"({report.frames / max(report.seconds, 1e-9):.0f} frames/s)"
    )
    return 0


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="render synthetic talking heads with ground-truth depth, landmarks and pose",
        description="Render a VoxCeleb-style train/ + test/ dataset of synthetic talking heads.",
    )
    p.add_argument(
        "--out",
        "--output",
        dest="out",
        required=True,
        metavar="DIR",
        help="dataset folder: train/ and test/ clips, with ground truth",
    )
    p.add_argument(
        "--identities",
        type=_positive_int,
        default=10,
        metavar="N",
        help="synthetic people (a fifth, at least one, held out for test/ when there are two or more)",
    )
    p.add_argument("--clips-per-identity", type=_positive_int, default=2, metavar="K", help="clips per person")
    p.add_argument("--frames", type=_positive_int, default=64, metavar="F", help="frames per clip")
    p.add_argument("--size", type=_even_size, default=256, metavar="S", help="even, at least 16")
    p.add_argument(
        "--seed",
        type=_non_negative_int,
        default=0,
        metavar="X",
        help="random seed: the same seed renders the same dataset",
    )
    p.add_argument("--format", choices=("mp4", "png"), default="mp4", help="clips as mp4 files or PNG folders")
    p.add_argument(
        "--still-head",
        action="store_true",
        help="each clip keeps one head pose; only the camera moves (and the mouth and eyes): a static scene "
        "for self-supervised depth (docs/depth.md)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_synth)


def _cmd_train_landmarks(args: argparse.Namespace) -> int:
    from dagan.pipelines.landmarks import train_landmarks

    result = train_landmarks(args.data, args.out, args.size, args.steps, seed=args.seed, quiet=args.quiet)
    print(
        f"wrote {args.out} in {result.seconds:.0f} s; mean absolute landmark error on the test identities "
        f"{result.test_error:.2f} px at {args.size}x{args.size}"
    )
    return 0


def _add_train_landmarks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-landmarks",
        help="train the synthetic-head landmark network that AKD uses on dagan synth evaluation sets",
        description="Train a small landmark regressor on a dagan synth dataset's ground truth (dlib does not "
        "find synthetic heads reliably); dagan evaluate --landmark-weights uses it for AKD.",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="a dagan synth dataset")
    p.add_argument("--out", "--output", dest="out", required=True, metavar="FILE.pth", help="where the weights go")
    p.add_argument("--size", type=_even_size, default=64, metavar="S", help="frame size (default 64)")
    p.add_argument("--steps", type=_positive_int, default=1500, metavar="N", help="training steps")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="random seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_train_landmarks)


def _cmd_synth_eval(args: argparse.Namespace) -> int:
    from dagan.data.synth_eval import write_eval_set

    report = write_eval_set(args.data, args.out, args.size, quiet=args.quiet)
    print(
        f"wrote {report.self_pairs} self-reenactment and {report.cross_pairs} cross-identity pairs "
        f"({report.frames} frames each) and the demo inputs to {report.out}"
    )
    return 0


def _add_synth_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth-eval",
        help="render evaluation pairs with ground truth from a dagan synth dataset's test identities",
        description="Self- and cross-identity pairs of a dagan synth dataset's held-out identities, with the "
        "ground-truth video and landmarks of each (the cross-identity truth is the source identity rendered "
        "with the driver's motion), in the layout dagan evaluate --eval-set reads.",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="a dagan synth dataset (its synth.json)")
    p.add_argument(
        "--out",
        "--output",
        dest="out",
        required=True,
        metavar="DIR",
        help="folder for the pairs, their ground truth and the demo inputs",
    )
    p.add_argument("--size", type=_even_size, default=None, metavar="S", help="frame size (default: the dataset's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_synth_eval)


def _cmd_train(args: argparse.Namespace) -> int:
    from dagan.pipelines.train import TrainOptions, describe, train

    options = TrainOptions(
        data=Path(args.data),
        out=Path(args.out),
        config=Path(args.config),
        resume=args.resume,
        max_steps=args.max_steps,
        depth_weights=_path(args.depth_weights),
        vgg_weights=_path(args.vgg_weights),
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        workers=args.workers,
        cache_clips=args.cache_clips,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        quiet=args.quiet,
    )
    result = train(options)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{describe(result)}; checkpoint {Path(args.out) / 'checkpoint.pth.tar'}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train DaGAN (also under torchrun for several GPUs or nodes)",
        description="Train DaGAN on train/ + test/ folders of clips. Under torchrun it runs DistributedDataParallel.",
    )
    p.add_argument("--config", required=True, metavar="CFG", help="original DaGAN YAML or dagan's own schema")
    p.add_argument("--data", required=True, metavar="DIR", help="folder with train/ and test/")
    p.add_argument(
        "--out", "--output", dest="out", required=True, metavar="RUN_DIR", help="run folder: checkpoint, log, visuals"
    )
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR/checkpoint.pth.tar exactly")
    p.add_argument(
        "--max-steps",
        type=_positive_int,
        default=None,
        metavar="N",
        help="at most N steps (never past train.num_epochs; default: all of them)",
    )
    p.add_argument(
        "--depth-weights", metavar="DIR", default=None, help="frozen face-depth weights: folder or .safetensors"
    )
    p.add_argument("--vgg-weights", metavar="PATH", default=None, help="torchvision vgg19-dcbb9e9d.pth")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="random seed")
    p.add_argument("--checkpoint-every", type=_positive_int, default=500, metavar="N", help="steps between checkpoints")
    p.add_argument("--workers", type=_non_negative_int, default=2, metavar="N", help="data-loading worker processes")
    p.add_argument(
        "--cache-clips", type=_non_negative_int, default=0, metavar="N", help="keep N decoded clips per worker"
    )
    _add_precision_flags(p)
    _add_device(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_max_pixels(p)
    p.set_defaults(handler=_cmd_train)


def _cmd_train_depth(args: argparse.Namespace) -> int:
    import json

    from dagan.io.atomic import atomic_output
    from dagan.pipelines.depth_eval import evaluate_depth, has_ground_truth
    from dagan.pipelines.depth_train import DepthTrainOptions, train_depth
    from dagan.pipelines.networks import load_trained_depth

    out = Path(args.out)
    if not args.eval:
        options = DepthTrainOptions(
            data=Path(args.data),
            out=out,
            layers=args.layers,
            size=args.size,
            resume=args.resume,
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            stride=args.stride,
            seed=args.seed,
            workers=args.workers,
            learning_rate=args.learning_rate if args.learning_rate is not None else DepthTrainOptions.learning_rate,
            override_learning_rate=args.resume and args.learning_rate is not None,
            intrinsics=args.intrinsics,
            translation_scale=args.translation_scale or DepthTrainOptions.translation_scale,
            cache_clips=args.cache_clips,
            validate_every=args.validate_every if args.validate_every is not None else DepthTrainOptions.validate_every,
            device=args.device,
            quiet=args.quiet,
        )
        result = train_depth(options)
        if int(os.environ.get("RANK", "0")) != 0:
            return 0
        print(f"trained depth to step {result.step} in {result.seconds:.0f} s; weights in {out}")
        network = result.depth
    else:
        network = load_trained_depth(out)
    if not args.eval and not has_ground_truth(args.data):
        return 0  # real videos: nothing to score against
    report = evaluate_depth(network.eval(), args.data, "test")
    with atomic_output(out / "depth_eval.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    print(f"{'':<10}" + "".join(f"{m:>12}" for m in report["model"]))
    for name, values in report.items():
        print(f"{name:<10}" + "".join(f"{v:>12.4f}" for v in values.values()))
    return 0


def _add_train_depth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-depth",
        help="train the face-depth network self-supervised (monodepth2 style) and evaluate it",
        description="Self-supervised face depth from videos; writes encoder.pth and depth.pth in the original format.",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="folder with train/ and test/ clips")
    p.add_argument(
        "--out",
        "--output",
        dest="out",
        required=True,
        metavar="RUN_DIR",
        help="run folder: encoder.pth, depth.pth, log, visuals",
    )
    p.add_argument("--layers", type=_whole_number, choices=(18, 50), default=18, help="ResNet depth of the encoder")
    p.add_argument("--size", type=_depth_size, default=256, help="training frame size")
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR exactly where it stopped")
    p.add_argument("--max-steps", type=_positive_int, default=None, metavar="N", help="stop after N steps")
    p.add_argument("--batch-size", type=_batch_size, default=4, metavar="N", help="frame triplets per step")
    p.add_argument("--stride", type=_positive_int, default=1, metavar="K", help="frames between neighbours")
    p.add_argument(
        "--learning-rate",
        type=_positive_float,
        default=None,
        metavar="LR",
        help="Adam learning rate (default 1e-4); with --resume, replaces the saved run's rate",
    )
    p.add_argument(
        "--intrinsics",
        type=_intrinsics,
        default=None,
        metavar="FX,FY,CX,CY",
        help="known camera as fractions of the image width/height (dagan synth: 0.95,0.95,0.5,0.5); "
        "by default the pose network learns it",
    )
    p.add_argument(
        "--translation-scale",
        type=_positive_float,
        default=None,
        metavar="S",
        help="the pose network's translation is S times its raw output (default 0.01, monodepth2's); raise it "
        "when the log's near_bound stays high (docs/depth.md)",
    )
    p.add_argument("--seed", type=_non_negative_int, default=0, help="random seed")
    p.add_argument("--workers", type=_non_negative_int, default=2, metavar="N", help="data-loading worker processes")
    p.add_argument(
        "--cache-clips",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="decode N clips once at the start (memory: N x frames x size^2 x 12 bytes)",
    )
    p.add_argument(
        "--validate-every",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="score the depth on test/ every N steps when it has dagan synth ground truth: log.jsonl val_* and "
        "validation.png (0: never; default 500)",
    )
    _add_device(p)
    p.add_argument(
        "--eval",
        action="store_true",
        help="only evaluate RUN_DIR's weights on test/ against dagan synth ground truth (with baselines)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_max_pixels(p)
    p.set_defaults(handler=_cmd_train_depth)


def _fraction(text: str) -> float:
    value = _finite_float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1, got {text!r}")
    return value


def _crop_flags(args: argparse.Namespace) -> dict[str, object]:
    """The ``CropConfig`` fields that ``dagan crop`` and ``animate --crop`` share."""
    return {"detect_every": args.detect_every, "detect_size": args.detect_size}


def _add_crop_detection_flags(p: argparse.ArgumentParser) -> None:
    from dagan.config import CropConfig

    p.add_argument(
        "--detect-every",
        type=_positive_int,
        default=None,
        metavar="K",
        help=f"detect faces on every K-th frame and at scene cuts, following them in between "
        f"(default {CropConfig.detect_every}; 1 detects on every frame)",
    )
    p.add_argument(
        "--detect-size",
        type=_positive_int,
        default=None,
        metavar="PX",
        help=f"shrink frames to this long side for face detection (default {CropConfig.detect_size}; "
        f"faces of about 80 pixels and more at that size are found; photos use {CropConfig.photo_detect_factor:g}x)",
    )


def _cmd_crop(args: argparse.Namespace) -> int:
    from dagan.pipelines.crop import crop_config, crop_files

    config = crop_config(
        size=args.size,
        increase=args.increase,
        iou=args.iou,
        min_frames=args.min_frames,
        format=args.format,
        **_crop_flags(args),
    )
    report = crop_files(args.input, args.out, config, quiet=args.quiet)
    print(f"{report.summary()}; see {report.tracks} and {report.preview}")
    return 0


def _add_crop(sub: argparse._SubParsersAction) -> None:
    from dagan.config import CropConfig

    p = sub.add_parser(
        "crop",
        help="cut real footage into talking-head crops (one fixed box per clip, VoxCeleb framing)",
        description="Find and follow every face of a video, an image or a folder of them, and cut it into "
        "square clips framed as the VoxCeleb crops the published checkpoints were trained on: a new clip at "
        "each scene cut, when the face is lost or leaves its clip's box. Writes OUT/<stem>_<index>.mp4 (with "
        "the clip's audio) or frame folders, OUT/<stem>_<face>.png for images, OUT/tracks.csv and OUT/preview.jpg.",
    )
    p.add_argument("--input", required=True, metavar="VIDEO|IMAGE|DIR", help="a video, a photo, or a folder of them")
    p.add_argument("--out", "--output", dest="out", required=True, metavar="DIR", help="output folder (new or empty)")
    p.add_argument("--size", type=_even_size, default=CropConfig.size, help="side of the crops in pixels")
    p.add_argument(
        "--increase",
        type=_non_negative_float,
        default=CropConfig.increase,
        metavar="X",
        help="margin added on each side of the VoxCeleb framing, as a fraction of the box (default 0)",
    )
    p.add_argument(
        "--iou",
        type=_fraction,
        default=CropConfig.iou,
        help="a clip ends when its face's box overlaps the clip's first box by less than this",
    )
    p.add_argument(
        "--min-frames",
        type=_positive_int,
        default=CropConfig.min_frames,
        metavar="N",
        help="skip clips shorter than N frames",
    )
    p.add_argument(
        "--format", choices=("mp4", "png"), default=CropConfig.format, help="clips as videos or frame folders"
    )
    _add_crop_detection_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_max_pixels(p)
    p.set_defaults(handler=_cmd_crop)


def _cmd_depth(args: argparse.Namespace) -> int:
    from dagan.pipelines.depth import depth_files

    report = depth_files(
        args.weights,
        args.input,
        args.out,
        raw=args.raw,
        ply=args.ply,
        focal=args.focal,
        size=args.size,
        batch_size=args.batch_size,
        device=args.device,
        quiet=args.quiet,
    )
    print(f"depth of {report.frames} frames written to {args.out}")
    return 0


def _add_depth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "depth",
        help="face depth of an image, a video or a folder: pictures, raw maps, point clouds",
        description="Run the face-depth network: colour-mapped disparity, raw depth and optional point clouds.",
    )
    p.add_argument("--weights", required=True, metavar="DIR", help="folder with encoder.pth and depth.pth")
    p.add_argument("--input", required=True, metavar="IMAGE|VIDEO|DIR", help="an image, a video or a folder of frames")
    p.add_argument("--out", "--output", dest="out", required=True, metavar="OUT", help="output folder")
    p.add_argument("--raw", choices=("npy", "png16", "none"), default="npy", help="raw depth format")
    p.add_argument("--ply", action="store_true", help="also write a coloured point cloud per frame")
    p.add_argument(
        "--focal", type=_positive_float, default=None, help="focal length in image widths (default: learned)"
    )
    p.add_argument("--size", type=_depth_size, default=256, help="the network's input size")
    p.add_argument("--batch-size", type=_batch_size, default=8, help="frames per network batch")
    _add_device(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_max_pixels(p)
    p.set_defaults(handler=_cmd_depth)


def _add_animate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "animate",
        help="animate a portrait with a driving video",
        description="Animate a source portrait with a driving video (or a folder of frames).",
        epilog="Weights are not downloaded: pass the published DaGAN_vox_adv_256.pth.tar or "
        "SPADE_DaGAN_vox_adv_256.pth.tar and the face-depth folder depth/models/weights_19 (encoder.pth, depth.pth) "
        "linked from https://github.com/harlanhong/CVPR2022-DaGAN, or train your own with "
        "'dagan train-depth' and 'dagan train'.",
    )
    p.add_argument(
        "--source",
        required=True,
        nargs="+",
        metavar="IMAGE",
        help="source portrait (PNG/JPEG, any size); several images or a folder give one output each, named "
        "after its source, in the --output folder (the driving video is read and its motion computed once)",
    )
    p.add_argument(
        "--driving",
        required=True,
        metavar="VIDEO_OR_FRAME_DIR",
        help="driving video or frame folder; or one image, animated into one image (absolute motion, or "
        "relative to --reference)",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        metavar="CKPT",
        help="DaGAN .pth.tar or .safetensors checkpoint (or, with --backend onnxruntime, a dagan export-onnx folder); "
        "without it and --depth-weights, the bundled demo model (synthetic heads)",
    )
    p.add_argument(
        "--depth-weights",
        metavar="DIR",
        default=None,
        help="face-depth weights: a folder with encoder.pth and depth.pth (or a .safetensors); "
        "may be omitted when the checkpoint .safetensors holds them",
    )
    p.add_argument(
        "--output",
        "--out",
        dest="output",
        default=None,
        metavar="OUT.mp4|OUT_DIR/",
        help="an .mp4 (H.264, driving fps and audio) or a folder for PNG frames (default: result.mp4; "
        "for a still driving image, an OUT.png, default result.png)",
    )
    motion = p.add_mutually_exclusive_group()
    motion.add_argument(
        "--relative", dest="relative", action="store_true", default=True, help="relative motion (default)"
    )
    motion.add_argument("--absolute", dest="relative", action="store_false", help="absolute keypoint positions")
    scale = p.add_mutually_exclusive_group()
    scale.add_argument(
        "--adapt-scale", dest="adapt_scale", action="store_true", default=True, help="adapt movement scale (default)"
    )
    scale.add_argument("--no-adapt-scale", dest="adapt_scale", action="store_false", help="use movement as it is")
    best = p.add_mutually_exclusive_group()
    best.add_argument("--best-frame", type=_non_negative_int, default=None, metavar="N", help="animate from frame N")
    best.add_argument(
        "--reference",
        default=None,
        metavar="IMAGE|N",
        help="the neutral face relative motion is measured from: an image (say a neutral photo of the driving "
        "person) or driving frame N (as --best-frame N); default: the first driving frame",
    )
    best.add_argument(
        "--find-best-frame",
        action="store_true",
        help="start from the driving frame whose face pose is closest to the source's (needs 'dagan[face]')",
    )
    p.add_argument(
        "--smooth",
        type=_non_negative_float,
        default=0.0,
        metavar="S",
        help="steady the driving motion: a One-Euro filter on the keypoints with a time constant of S frames "
        "for a still head (default 0: off, as the published results; docs/smoothing.md measures S)",
    )
    _add_device(p)
    p.add_argument(
        "--batch-size",
        type=_batch_size,
        default=None,
        metavar="N",
        help="driving frames per batch (default: 1 on CPU, where batching buys no speed; 8 on GPU)",
    )
    p.add_argument("--save-depth", default=None, metavar="DEPTH.mp4", help="also write the driving depth as a video")
    from dagan.config import DEPTH_STYLES

    p.add_argument(
        "--depth-style",
        choices=DEPTH_STYLES,
        default="colour",
        help="how --save-depth and the side-by-side panel draw depth: a colour map over one range per video "
        "(default), or the original demo's grey 1 - d / max d (nearly black on the bundled model)",
    )
    p.add_argument(
        "--side-by-side", action="store_true", help="write source | driving | depth | result panels as the output"
    )
    p.add_argument(
        "--save-side-by-side",
        default=None,
        metavar="PANELS.mp4",
        help="also write source | driving | depth | result panels as a video",
    )
    _add_precision_flags(p)
    p.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="run the networks in torch (default) or in onnxruntime (a torch checkpoint is exported first)",
    )
    p.add_argument(
        "--cpu-workers",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="on CPU, batches computed at once, each on its share of the cores (default 0: one per core, at most 4)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="an --output folder may hold an earlier run's frames, which are replaced (never other files)",
    )
    from dagan.config import CropConfig

    footage = p.add_argument_group("real footage (needs 'dagan[face]')")
    footage.add_argument(
        "--crop",
        action="store_true",
        help="cut the source photo's face and the driving video's clips as 'dagan crop' does before animating "
        "(any size of photo and video; each driving clip is animated relative to its own first frame)",
    )
    footage.add_argument(
        "--paste-back",
        action="store_true",
        help="with --crop: blend the animated face back into the source photo at its full resolution",
    )
    footage.add_argument(
        "--face",
        default=None,
        metavar="N|all",
        help="with --crop: which face of the source photo to animate, numbered from 0 left to right, or all "
        "(default: the largest)",
    )
    footage.add_argument(
        "--mask-feather",
        type=_non_negative_float,
        default=None,
        metavar="F",
        help=f"with --paste-back: the soft edge of the face-and-hair mask, in face sizes "
        f"(default {CropConfig.mask_feather:g}; docs/crop.md)",
    )
    _add_crop_detection_flags(footage)
    _add_max_pixels(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_animate)


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from dagan.io.atomic import check_outputs
    from dagan.pipelines.networks import load_animation_networks
    from dagan.pipelines.onnx_backend import export_onnx

    inputs = {"--checkpoint": args.checkpoint, "--depth-weights": args.depth_weights}
    check_outputs({"--out": args.out}, inputs, ["--out"])
    networks = load_animation_networks(args.checkpoint, args.depth_weights)
    written = export_onnx(networks, args.out, args.size or networks.frame_size)
    print(f"wrote {', '.join(path.name for path in written)} to {args.out}")
    return 0


def _add_export_onnx(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-onnx",
        help="export the depth, keypoint and generator networks to ONNX",
        description="Export the animation networks (fused, fp32, dynamic batch) to ONNX graphs for onnxruntime; "
        "run them with 'dagan animate --backend onnxruntime --checkpoint OUT_DIR'.",
    )
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="DaGAN .pth.tar or .safetensors checkpoint")
    p.add_argument("--depth-weights", metavar="DIR", default=None, help="face-depth weights folder or .safetensors")
    p.add_argument(
        "--out", "--output", dest="out", required=True, metavar="DIR", help="folder for the .onnx files and onnx.json"
    )
    p.add_argument(
        "--size", type=_depth_size, default=None, metavar="S", help="frame size the graphs take (default: the model's)"
    )
    p.set_defaults(handler=_cmd_export_onnx)


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert checkpoints between .pth.tar / depth folders and .safetensors",
        description="Convert between the original files (.pth.tar, encoder.pth + depth.pth) and .safetensors.",
    )
    p.add_argument("input", help=".pth.tar, depth folder, or .safetensors")
    p.add_argument("output", help=".safetensors, .pth.tar, or a folder for depth weights")
    p.add_argument("--depth-weights", metavar="DIR", default=None, help="bundle these depth weights too")
    p.add_argument("--half", action="store_true", help="store floats as fp16 (safetensors only)")
    p.add_argument(
        "--inference-only",
        action="store_true",
        help="leave out what animation never runs: the discriminator and the depth encoder's classifier",
    )
    p.set_defaults(handler=_cmd_convert)


def _cmd_generate(args: argparse.Namespace) -> int:
    from dagan.config import InferenceConfig
    from dagan.pipelines.generate import GenerateOptions, generate

    if bool(args.pairs) == bool(args.source_dir or args.driving_dir):
        raise DaganError("give either --source-dir and --driving-dir, or --pairs CSV --root R")
    if not args.pairs and not (args.source_dir and args.driving_dir):
        raise DaganError("--source-dir and --driving-dir go together")
    options = GenerateOptions(
        checkpoint=Path(args.checkpoint),
        out=Path(args.out),
        depth_weights=_path(args.depth_weights),
        source_dir=_path(args.source_dir),
        driving_dir=_path(args.driving_dir),
        pairs_csv=_path(args.pairs),
        root=_path(args.root),
        mode=args.mode,
        batch_size=args.batch_size,
        device=args.device,
        inference=InferenceConfig(precision=args.precision, compile=args.compile),
        quiet=args.quiet,
    )
    counts = generate(options)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"generated {counts['written']} outputs in {args.out} ({counts['skipped']} already there)")
    return 0


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="animate many (source, driving) pairs into an evaluation set (resumable, torchrun-sharded)",
        description="Pairs come from two folders matched by file name, or from source,driving[,frame] CSVs.",
    )
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="DaGAN .pth.tar or .safetensors checkpoint")
    p.add_argument("--depth-weights", metavar="DIR", default=None, help="face-depth weights folder or .safetensors")
    p.add_argument(
        "--out", "--output", dest="out", required=True, metavar="DIR", help="folder for the generated videos and images"
    )
    p.add_argument("--source-dir", metavar="S", default=None, help="source images (or videos) named like the drivers")
    p.add_argument("--driving-dir", metavar="D", default=None, help="driving images or videos")
    p.add_argument("--pairs", metavar="CSV", default=None, help="rows source,driving[,frame] (vox_evaluation.csv)")
    p.add_argument("--root", metavar="R", default=None, help="folder the CSV's relative paths start from")
    p.add_argument(
        "--mode",
        choices=("self", "cross"),
        default="cross",
        help="self: reconstruct the driving video (absolute keypoints); cross: relative motion (default)",
    )
    p.add_argument("--batch-size", type=_batch_size, default=None, metavar="N", help="driving frames per batch")
    _add_device(p)
    _add_precision_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_max_pixels(p)
    p.set_defaults(handler=_cmd_generate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from dagan.pipelines.evaluate import EvaluateOptions, evaluate, resolve_eval_set

    if args.eval_set:
        generated, driving, source = resolve_eval_set(Path(args.eval_set), args.generated)
    else:
        generated = Path(args.generated)
        driving = _path(args.driving)
        source = _path(args.source)
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    options = EvaluateOptions(
        generated=generated,
        out=Path(args.out),
        driving=driving,
        source=source,
        metrics=metrics,
        max_samples=args.max_samples,
        save_visuals=args.save_visuals,
        syncnet_weights=_path(args.syncnet_weights),
        lpips_weights=_path(args.lpips_weights),
        fid_weights=_path(args.fid_weights),
        arcface_weights=_path(args.arcface_weights),
        landmark_weights=_path(args.landmark_weights),
        device=args.device,
        batch_size=args.batch_size,
        quiet=args.quiet,
    )
    report = evaluate(options)
    missing = [name for name, entry in report.items() if entry.get("unavailable")]
    print((Path(args.out) / "metrics.txt").read_text(), end="")
    if missing:
        print(f"unavailable: {', '.join(missing)} (reasons in {Path(args.out) / 'metrics.json'})")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    from dagan.config import ALL_METRICS

    p = sub.add_parser(
        "evaluate",
        help="score generated frames or videos (PSNR, SSIM, L1, NIQE, ...) and write a report",
        description="Compute each metric as its reference implementation does; metrics that cannot run are "
        "reported as unavailable with the reason, and the others still run.",
    )
    p.add_argument("--generated", required=True, metavar="G", help="folder of generated images or videos")
    p.add_argument("--driving", metavar="D", default=None, help="folder of driving (ground-truth) files, same names")
    p.add_argument("--source", metavar="S", default=None, help="folder of source files, same names")
    p.add_argument(
        "--out",
        "--output",
        dest="out",
        required=True,
        metavar="REPORT_DIR",
        help="folder for metrics.json, metrics.txt and plots",
    )
    p.add_argument(
        "--metrics", default=",".join(ALL_METRICS), help=f"comma-separated (default: {','.join(ALL_METRICS)})"
    )
    for name in ("fid", "lpips", "syncnet", "arcface"):
        p.add_argument(f"--{name}-weights", metavar="PATH", default=None, help=f"{name} network weights")
    p.add_argument(
        "--landmark-weights",
        metavar="PATH",
        default=None,
        help="a dagan train-landmarks network: AKD on synthetic heads against their ground-truth landmarks",
    )
    _add_device(p)
    p.add_argument("--batch-size", type=_batch_size, default=20, metavar="N", help="windows per network batch")
    p.add_argument(
        "--eval-set",
        metavar="DIR",
        default=None,
        help="the reproduction's layout: --generated names a folder in DIR; *_self pairs with gt_self/source_self, "
        "other names with gt_cross/source_cross",
    )
    p.add_argument("--max-samples", type=_positive_int, default=None, metavar="N", help="only the first N items")
    p.add_argument("--save-visuals", action="store_true", help="write source | driving | generated triplets")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_max_pixels(p)
    p.set_defaults(handler=_cmd_evaluate)


def _cmd_demo(args: argparse.Namespace) -> int:
    from dagan.pipelines.demo import run_demo

    demo = run_demo(args.output, args.device, args.quiet)
    print(f"wrote {demo.report.frames} frames ({demo.report.seconds:.1f} s):")
    for label, path in (("result", demo.result), ("side by side", demo.side_by_side), ("depth", demo.depth)):
        print(f"  {label:<13}{path}")
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="animate the bundled portrait with the bundled model (no downloads)",
        description="Animate a bundled synthetic portrait with a bundled driving clip, using the small model "
        "that ships with dagan (trained on synthetic heads: docs/model-card.md).",
    )
    p.add_argument(
        "--output",
        "--out",
        dest="output",
        default="dagan-demo",
        metavar="DIR",
        help="folder for the videos (default: dagan-demo)",
    )
    _add_device(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_demo)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_demo,
    _add_animate,
    _add_convert,
    _add_synth,
    _add_synth_eval,
    _add_train_landmarks,
    _add_train,
    _add_train_depth,
    _add_depth,
    _add_crop,
    _add_export_onnx,
    _add_generate,
    _add_evaluate,
]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, like every other dagan error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``dagan`` argument parser with every sub-command."""
    parser = _Parser(
        prog="dagan",
        description="DaGAN: depth-aware talking-head generation (Hong et al., CVPR 2022).",
    )
    parser.add_argument("--version", action="version", version=f"dagan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is so that the same clean-up as for Ctrl-C runs."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    # No option of dagan's takes an empty value: an unset shell variable must not mean "here".
    for name, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(item, str) and not item.strip() for item in values):
            flag = name if name in ("input", "output") and args.command == "convert" else f"--{name.replace('_', '-')}"
            parser.error(f"{args.command}: {flag} must not be empty")
    from dagan.config import DEFAULT_MAX_PIXELS
    from dagan.io.image import set_max_pixels

    # Set on every call, so one run's --max-pixels never carries over to the next main() in a process.
    set_max_pixels(getattr(args, "max_pixels", None) or DEFAULT_MAX_PIXELS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dagan`` console script."""
    args = _parse(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return _run(args)
    finally:
        if previous is not None:  # a caller of main() (a test, a notebook) gets its own handler back
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    """Run the command; every failure of the user's input or environment becomes one line."""
    try:
        return args.handler(args)
    except DaganError as exc:
        print(f"dagan: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except _Terminated:
        print("dagan: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("dagan: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print(f"dagan: error: out of memory in '{args.command}' (try smaller inputs or --batch-size)", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:
        # The file system said no (disk full, read-only, permissions, a path that cannot be made):
        # the environment, not a bug, so one line naming the file.
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        target = f" {exc.filename}" if exc.filename else ""
        print(f"dagan: error: cannot use{target}: {exc.strerror or first_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
