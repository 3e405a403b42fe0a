"""Command line: a thin layer over the pipelines. Every user error is one line and exit code 2."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import math
import os
import signal
import sys
import threading
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from dagan import __version__
from dagan.errors import DaganError, first_line
from dagan.options import (
    AnimateOptions,
    AppOptions,
    CropOptions,
    DemoOptions,
    DepthOptions,
    DepthTrainOptions,
    EvaluateOptions,
    ExportOnnxOptions,
    GenerateOptions,
    LandmarkTrainOptions,
    SynthEvalOptions,
    SynthOptions,
    TrainOptions,
)
from dagan.pipelines.memory import ALLOCATORS, keep_freed_memory, limit_heap_arenas, run_under_allocator

if TYPE_CHECKING:
    from dagan.config import Flag

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


def _fraction(text: str) -> float:
    value = _finite_float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1, got {text!r}")
    return value


def _port(text: str) -> int:
    value = _whole_number(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {value}")
    return value


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


def _names(text: str) -> tuple[str, ...] | str:
    """A comma-separated list of names (a blank text stays text, for ``_parse`` to refuse as empty)."""
    if not text.strip():
        return text
    return tuple(name.strip() for name in text.split(",") if name.strip())


#: The value parsers an options field names in its ``Flag.parse``.
_VALUE_PARSERS: dict[str, Callable[[str], object]] = {
    "whole_number": _whole_number,
    "positive_int": _positive_int,
    "non_negative_int": _non_negative_int,
    "batch_size": _batch_size,
    "positive_float": _positive_float,
    "non_negative_float": _non_negative_float,
    "intrinsics": _intrinsics,
    "depth_size": _depth_size,
    "even_size": _even_size,
    "fraction": _fraction,
    "names": _names,
    "port": _port,
}


def _nested_options(kind: object) -> type | None:
    """The dataclass a field holds (``X`` or ``X | None``), if it holds one."""
    candidates = (kind, *typing.get_args(kind))
    return next((c for c in candidates if isinstance(c, type) and dataclasses.is_dataclass(c)), None)


def _default_text(spec: dataclasses.Field, flag: Flag) -> str:
    if flag.default_text is not None:
        return flag.default_text
    value = spec.default
    if value is dataclasses.MISSING or value is None or value is False:
        return ""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _has_no_default(spec: dataclasses.Field) -> bool:
    return spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING


def _add_options(
    parser: argparse.ArgumentParser, options: type, only: Sequence[str] = (), sections: bool = True
) -> None:
    """A flag for each ``config.option`` field of the dataclass ``options``, in field order.

    Every flag's parser default is None, so ``_options`` passes on only what was given and the
    dataclass's own default holds otherwise; the help text shows that default. ``sections``
    False lists every flag in the main section (for flags borrowed from another command).
    """
    hints = typing.get_type_hints(options)
    titled: dict[str, argparse._ArgumentGroup] = {}
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for spec in dataclasses.fields(options):
        flag: Flag | None = spec.metadata.get("flag")
        if flag is None or (only and spec.name not in only):
            continue
        nested = _nested_options(hints[spec.name])
        if nested is not None:
            _add_options(parser, nested, flag.only)
            continue
        target = parser
        if flag.section and sections:
            if flag.section not in titled:
                titled[flag.section] = parser.add_argument_group(flag.section)
            target = titled[flag.section]
        if flag.group or flag.negation:
            key = flag.group or spec.name
            if key not in groups:
                groups[key] = target.add_mutually_exclusive_group()
            target = groups[key]
        names = flag.names or (f"--{spec.name.replace('_', '-')}",)
        shown = _default_text(spec, flag)
        common = {"dest": spec.name, "default": None, "help": flag.help + (f" (default: {shown})" if shown else "")}
        if hints[spec.name] is bool:
            target.add_argument(*names, action="store_true", **common)
            if flag.negation:
                target.add_argument(flag.negation[0], dest=spec.name, action="store_false", help=flag.negation[1])
            continue
        target.add_argument(
            *names,
            type=_VALUE_PARSERS[flag.parse] if flag.parse else str,
            metavar=flag.metavar,
            choices=flag.choices,
            required=flag.required or _has_no_default(spec),
            nargs="+" if flag.many else None,
            **common,
        )


def _arguments(options: object) -> dict[str, object]:
    """The fields of an options dataclass as keyword arguments (of the job function they mirror)."""
    return {spec.name: getattr(options, spec.name) for spec in dataclasses.fields(options)}


def _options(options: type, args: argparse.Namespace, **given: object) -> object:
    """The dataclass ``options`` from the flags that were given (and ``given``); its defaults fill the rest."""
    hints = typing.get_type_hints(options)
    for spec in dataclasses.fields(options):
        if spec.name in given or "flag" not in spec.metadata:
            continue
        nested = _nested_options(hints[spec.name])
        value = _options(nested, args) if nested is not None else getattr(args, spec.name, None)
        if value is None:
            continue
        if Path in (hints[spec.name], *typing.get_args(hints[spec.name])):
            value = tuple(map(Path, value)) if isinstance(value, list) else Path(value)
        given[spec.name] = value
    return options(**given)


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


def _add_allocator(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allocator",
        choices=ALLOCATORS,
        default="default",
        help="heap allocator of the process: default (glibc's, or what LD_PRELOAD gives), or tcmalloc (re-runs "
        "the command with libtcmalloc_minimal preloaded: same results, faster and lighter, docs/performance.md)",
    )


def _cmd_animate(args: argparse.Namespace) -> int:
    from dagan.pipelines.animate import animate_files
    from dagan.pipelines.demo import BUNDLED_MODEL_NOTICE, weights_or_bundled

    options = _options(AnimateOptions, args)
    checkpoint, depth_weights = weights_or_bundled(options.checkpoint, options.depth_weights)
    if options.checkpoint is None:
        print(BUNDLED_MODEL_NOTICE, file=sys.stderr)
    if options.crop:
        return _animate_footage(options, checkpoint, depth_weights)
    for name in ("paste_back", "face", "mask_feather", "detect_every", "detect_size"):
        value = getattr(options, name)
        if value is not None and value is not False:  # --mask-feather 0 is given, though 0 == False
            raise DaganError(f"--{name.replace('_', '-')} works with --crop only")
    source = options.source[0] if len(options.source) == 1 else list(options.source)
    arguments = options.files_arguments()
    report = animate_files(source, options.driving, checkpoint, depth_weights, options.output, **arguments)
    fps = report.frames / report.seconds if report.seconds > 0 else float("nan")
    extra = f", depth video {report.depth_output}" if report.depth_output else ""
    extra += f", side-by-side video {report.side_by_side_output}" if report.side_by_side_output else ""
    print(f"wrote {report.frames} frames to {report.output}{extra} ({report.seconds:.1f} s, {fps:.2f} frames/s)")
    return 0


def _animate_footage(options: AnimateOptions, checkpoint: Path, depth_weights: Path | None) -> int:
    from dagan.pipelines.crop import crop_config
    from dagan.pipelines.footage import animate_footage

    if len(options.source) > 1:
        raise DaganError("--crop animates one source photo (use --face all for several faces in it)")
    unsupported = {
        "--reference": options.reference is not None,
        "--best-frame": options.best_frame is not None,
        "--find-best-frame": options.find_best_frame,
        "--save-depth": options.save_depth is not None,
        "--side-by-side": options.side_by_side_output,
        "--save-side-by-side": options.save_side_by_side is not None,
    }
    given = [flag for flag, on in unsupported.items() if on]
    if given:
        raise DaganError(f"{given[0]} does not work with --crop: each driving clip starts from its own first frame")
    if options.mask_feather is not None and not options.paste_back:
        raise DaganError("--mask-feather works with --paste-back only")
    report = animate_footage(
        options.source[0],
        options.driving,
        checkpoint,
        depth_weights,
        options.output,
        paste_back=options.paste_back,
        face=options.face,
        mask_feather=options.mask_feather,
        crop=crop_config(detect_every=options.detect_every, detect_size=options.detect_size),
        relative=options.relative,
        adapt_scale=options.adapt_scale,
        device=options.device,
        batch_size=options.batch_size,
        smooth=options.smooth,
        quiet=options.quiet,
        inference=options.inference,
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

    options = _options(SynthOptions, args)
    report = write_dataset(**_arguments(options))
    print(
        f"wrote {report.clips} clips ({report.frames} frames) to {options.out} in {report.seconds:.1f} s "
        f"({report.frames / max(report.seconds, 1e-9):.0f} frames/s)"
    )
    return 0


def _cmd_train_landmarks(args: argparse.Namespace) -> int:
    from dagan.pipelines.landmarks import train_landmarks

    options = _options(LandmarkTrainOptions, args)
    result = train_landmarks(**_arguments(options))
    print(
        f"wrote {options.out} in {result.seconds:.0f} s; mean absolute landmark error on the test identities "
        f"{result.test_error:.2f} px at {options.size}x{options.size}"
    )
    return 0


def _cmd_synth_eval(args: argparse.Namespace) -> int:
    from dagan.data.synth_eval import write_eval_set

    report = write_eval_set(**_arguments(_options(SynthEvalOptions, args)))
    print(
        f"wrote {report.self_pairs} self-reenactment and {report.cross_pairs} cross-identity pairs "
        f"({report.frames} frames each) and the demo inputs to {report.out}"
    )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from dagan.pipelines.train import describe, train

    options = _options(TrainOptions, args)
    result = train(options)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{describe(result)}; checkpoint {options.out / 'checkpoint.pth.tar'}")
    return 0


def _cmd_train_depth(args: argparse.Namespace) -> int:
    import json

    from dagan.io.atomic import atomic_output
    from dagan.pipelines.depth_eval import evaluate_depth, has_ground_truth
    from dagan.pipelines.depth_train import train_depth
    from dagan.pipelines.networks import load_trained_depth

    out = Path(args.out)
    if not args.eval:
        # A rate given with --resume replaces the saved run's; without --resume it simply starts there.
        override = bool(args.resume) and args.learning_rate is not None
        result = train_depth(_options(DepthTrainOptions, args, override_learning_rate=override))
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


def _cmd_crop(args: argparse.Namespace) -> int:
    from dagan.pipelines.crop import crop_config, crop_files

    options = _options(CropOptions, args)
    framing = {name: value for name, value in _arguments(options).items() if name not in ("input", "out", "quiet")}
    config = crop_config(**framing, detect_every=args.detect_every, detect_size=args.detect_size)
    report = crop_files(options.input, options.out, config, quiet=options.quiet)
    print(f"{report.summary()}; see {report.tracks} and {report.preview}")
    return 0


def _cmd_depth(args: argparse.Namespace) -> int:
    from dagan.pipelines.depth import depth_files

    options = _options(DepthOptions, args)
    report = depth_files(**_arguments(options))
    print(f"depth of {report.frames} frames written to {options.out}")
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from dagan.io.atomic import check_outputs
    from dagan.pipelines.networks import load_animation_networks
    from dagan.pipelines.onnx_backend import export_onnx

    options = _options(ExportOnnxOptions, args)
    inputs = {"--checkpoint": options.checkpoint, "--depth-weights": options.depth_weights}
    check_outputs({"--out": options.out}, inputs, ["--out"])
    networks = load_animation_networks(options.checkpoint, options.depth_weights)
    written = export_onnx(networks, options.out, options.size or networks.frame_size)
    print(f"wrote {', '.join(path.name for path in written)} to {options.out}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from dagan.pipelines.generate import generate

    if bool(args.pairs_csv) == bool(args.source_dir or args.driving_dir):
        raise DaganError("give either --source-dir and --driving-dir, or --pairs CSV --root R")
    if not args.pairs_csv and not (args.source_dir and args.driving_dir):
        raise DaganError("--source-dir and --driving-dir go together")
    options = _options(GenerateOptions, args)
    counts = generate(options)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"generated {counts['written']} outputs in {options.out} ({counts['skipped']} already there)")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from dagan.pipelines.evaluate import evaluate, resolve_eval_set

    given = {}
    if args.eval_set:
        generated, driving, source = resolve_eval_set(Path(args.eval_set), args.generated)
        given = {"generated": generated, "driving": driving, "source": source}
    options = _options(EvaluateOptions, args, **given)
    report = evaluate(options)
    missing = [name for name, entry in report.items() if entry.get("unavailable")]
    print((options.out / "metrics.txt").read_text(), end="")
    if missing:
        print(f"unavailable: {', '.join(missing)} (reasons in {options.out / 'metrics.json'})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from dagan.pipelines.demo import run_demo

    demo = run_demo(**_arguments(_options(DemoOptions, args)))
    print(f"wrote {demo.report.frames} frames ({demo.report.seconds:.1f} s):")
    for label, path in (("result", demo.result), ("side by side", demo.side_by_side), ("depth", demo.depth)):
        print(f"  {label:<13}{path}")
    return 0


def _cmd_app(args: argparse.Namespace) -> int:
    from dagan.app import serve

    serve(_options(AppOptions, args))
    return 0


def _train_depth_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--eval",
        action="store_true",
        help="only evaluate RUN_DIR's weights on test/ against dagan synth ground truth (with baselines)",
    )


def _evaluate_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--eval-set",
        metavar="DIR",
        default=None,
        help="the reproduction's layout: --generated names a folder in DIR; *_self pairs with gt_self/source_self, "
        "other names with gt_cross/source_cross",
    )


def _crop_flags(p: argparse.ArgumentParser) -> None:
    # The detection flags are animate --crop's own: one definition for both commands.
    _add_options(p, AnimateOptions, only=("detect_every", "detect_size"), sections=False)


def _convert_arguments(p: argparse.ArgumentParser) -> None:
    # convert alone takes positional paths, so its flags are written here rather than generated.
    p.add_argument("input", help=".pth.tar, depth folder, or .safetensors")
    p.add_argument("output", help=".safetensors, .pth.tar, or a folder for depth weights")
    p.add_argument("--depth-weights", metavar="DIR", default=None, help="bundle these depth weights too")
    p.add_argument("--half", action="store_true", help="store floats as fp16 (safetensors only)")
    p.add_argument(
        "--inference-only",
        action="store_true",
        help="leave out what animation never runs: the discriminator and the depth encoder's classifier",
    )


@dataclass(frozen=True)
class _Command:
    """One sub-command: its options dataclass (its flags are generated from it), its handler and its help."""

    name: str
    options: type | None
    handler: Callable[[argparse.Namespace], int]
    help: str
    description: str
    epilog: str | None = None
    #: What only a command line has: flags that are not options of the job.
    extra: Callable[[argparse.ArgumentParser], None] | None = None
    #: Whether the command reads images or video frames, and so takes --max-pixels.
    reads_media: bool = True
    #: Whether it animates frames on worker threads, whose heap is then one malloc arena (memory.py).
    animates: bool = False
    #: Whether it takes optimiser steps, and so takes --allocator.
    trains: bool = False
    #: Whether it runs large networks over and over (training steps, evaluation batches), whose heap
    #: then keeps the memory each pass frees instead of faulting it in afresh (memory.py).
    repeats_passes: bool = False


COMMANDS = [
    _Command(
        "demo",
        DemoOptions,
        _cmd_demo,
        "animate the bundled portrait with the bundled model (no downloads)",
        "Animate a bundled synthetic portrait with a bundled driving clip, using the small model that ships with "
        "dagan (trained on synthetic heads: docs/model-card.md).",
        reads_media=False,
        animates=True,
    ),
    _Command(
        "animate",
        AnimateOptions,
        _cmd_animate,
        "animate a portrait with a driving video",
        "Animate a source portrait with a driving video (or a folder of frames).",
        epilog="Weights are not downloaded: pass the published DaGAN_vox_adv_256.pth.tar or "
        "SPADE_DaGAN_vox_adv_256.pth.tar and the face-depth folder depth/models/weights_19 (encoder.pth, depth.pth) "
        "linked from https://github.com/harlanhong/CVPR2022-DaGAN, or train your own with "
        "'dagan train-depth' and 'dagan train'.",
        animates=True,
    ),
    _Command(
        "convert",
        None,
        _cmd_convert,
        "convert checkpoints between .pth.tar / depth folders and .safetensors",
        "Convert between the original files (.pth.tar, encoder.pth + depth.pth) and .safetensors.",
        extra=_convert_arguments,
        reads_media=False,
    ),
    _Command(
        "synth",
        SynthOptions,
        _cmd_synth,
        "render synthetic talking heads with ground-truth depth, landmarks and pose",
        "Render a VoxCeleb-style train/ + test/ dataset of synthetic talking heads.",
        reads_media=False,
    ),
    _Command(
        "synth-eval",
        SynthEvalOptions,
        _cmd_synth_eval,
        "render evaluation pairs with ground truth from a dagan synth dataset's test identities",
        "Self- and cross-identity pairs of a dagan synth dataset's held-out identities, with the ground-truth video "
        "and landmarks of each (the cross-identity truth is the source identity rendered with the driver's motion), "
        "in the layout dagan evaluate --eval-set reads.",
        reads_media=False,
    ),
    _Command(
        "train-landmarks",
        LandmarkTrainOptions,
        _cmd_train_landmarks,
        "train the synthetic-head landmark network that AKD uses on dagan synth evaluation sets",
        "Train a small landmark regressor on a dagan synth dataset's ground truth (dlib does not find synthetic "
        "heads reliably); dagan evaluate --landmark-weights uses it for AKD.",
        reads_media=False,
    ),
    _Command(
        "train",
        TrainOptions,
        _cmd_train,
        "train DaGAN (also under torchrun for several GPUs or nodes)",
        "Train DaGAN on train/ + test/ folders of clips. Under torchrun it runs DistributedDataParallel.",
        trains=True,
        repeats_passes=True,
    ),
    _Command(
        "train-depth",
        DepthTrainOptions,
        _cmd_train_depth,
        "train the face-depth network self-supervised (monodepth2 style) and evaluate it",
        "Self-supervised face depth from videos; writes encoder.pth and depth.pth in the original format.",
        extra=_train_depth_flags,
        trains=True,
        repeats_passes=True,
    ),
    _Command(
        "depth",
        DepthOptions,
        _cmd_depth,
        "face depth of an image, a video or a folder: pictures, raw maps, point clouds",
        "Run the face-depth network: colour-mapped disparity, raw depth and optional point clouds.",
    ),
    _Command(
        "crop",
        CropOptions,
        _cmd_crop,
        "cut real footage into talking-head crops (one fixed box per clip, VoxCeleb framing)",
        "Find and follow every face of a video, an image or a folder of them, and cut it into square clips framed as "
        "the VoxCeleb crops the published checkpoints were trained on: a new clip at each scene cut, when the face "
        "is lost or leaves its clip's box. Writes OUT/<stem>_<index>.mp4 (with the clip's audio) or frame folders, "
        "OUT/<stem>_<face>.png for images, OUT/tracks.csv and OUT/preview.jpg.",
        extra=_crop_flags,
    ),
    _Command(
        "export-onnx",
        ExportOnnxOptions,
        _cmd_export_onnx,
        "export the depth, keypoint and generator networks to ONNX",
        "Export the animation networks (fused, fp32, dynamic batch) to ONNX graphs for onnxruntime; run them with "
        "'dagan animate --backend onnxruntime --checkpoint OUT_DIR'.",
        reads_media=False,
    ),
    _Command(
        "generate",
        GenerateOptions,
        _cmd_generate,
        "animate many (source, driving) pairs into an evaluation set (resumable, torchrun-sharded)",
        "Pairs come from two folders matched by file name, or from source,driving[,frame] CSVs.",
        animates=True,
    ),
    _Command(
        "evaluate",
        EvaluateOptions,
        _cmd_evaluate,
        "score generated frames or videos (PSNR, SSIM, L1, NIQE, ...) and write a report",
        "Compute each metric as its reference implementation does; metrics that cannot run are reported as "
        "unavailable with the reason, and the others still run.",
        extra=_evaluate_flags,
        repeats_passes=True,
    ),
    _Command(
        "app",
        AppOptions,
        _cmd_app,
        "serve the animation web page (Gradio, offline; needs 'dagan[app]')",
        "A web page to animate a portrait with a driving video: upload both, click Animate, and get the result, "
        "the side-by-side panels and the depth video. Loopback only unless --host says otherwise.",
        animates=True,
    ),
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
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.description, epilog=command.epilog)
        if command.options is not None:
            _add_options(p, command.options)
        if command.extra is not None:
            command.extra(p)
        if command.reads_media:
            _add_max_pixels(p)
        if command.trains:
            _add_allocator(p)
        p.set_defaults(
            handler=command.handler,
            animates=command.animates,
            trains=command.trains,
            repeats_passes=command.repeats_passes,
        )
    return parser


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is so that the same clean-up as for Ctrl-C runs."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


def _flag_of(parser: argparse.ArgumentParser, command: str, dest: str) -> str:
    """The flag that sets ``dest`` in ``command`` (a positional argument's own name)."""
    sub = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    flags = [action.option_strings for action in sub.choices[command]._actions if action.dest == dest]
    return flags[0][0] if flags and flags[0] else dest


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    # No option of dagan's takes an empty value: an unset shell variable must not mean "here".
    for name, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(item, str) and not item.strip() for item in values):
            parser.error(f"{args.command}: {_flag_of(parser, args.command, name)} must not be empty")
    from dagan.config import DEFAULT_MAX_PIXELS
    from dagan.io.image import set_max_pixels

    # Set on every call, so one run's --max-pixels never carries over to the next main() in a process.
    set_max_pixels(getattr(args, "max_pixels", None) or DEFAULT_MAX_PIXELS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dagan`` console script."""
    args = _parse(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.animates:
        limit_heap_arenas()
    if args.repeats_passes:
        keep_freed_memory()
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
        if args.trains:
            # First of all: the re-run starts the command afresh, so nothing of it runs twice.
            run_under_allocator(args.allocator, [sys.executable, "-m", "dagan", *args.argv])
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
