"""What each job takes: one dataclass per command, its defaults and help stated once, here.

``dagan.cli`` generates the commands' flags from these fields (``config.option``), and the
pipelines take the dataclasses themselves, so a default can no longer differ between the command
line and the Python API. Nothing here imports torch: ``dagan --help`` stays fast.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from dagan.config import (
    ALL_METRICS,
    DEPTH_STYLES,
    DEVICES,
    MONODEPTH2_MOTION_SCALE,
    CropConfig,
    InferenceConfig,
    Precision,
    option,
)

Mode = Literal["self", "cross"]

_DEVICE_HELP = "where the networks run (auto: CUDA, then Apple MPS, then CPU)"
_QUIET_HELP = "no progress bar"
_WORKERS_HELP = "data-loading worker processes"
_OR_BUNDLED = "without it and --depth-weights, the bundled demo model (synthetic heads)"
_DEPTH_FOLDER_HELP = "face-depth weights: a folder with encoder.pth and depth.pth (or a .safetensors)"


def _device() -> str:
    return option("auto", _DEVICE_HELP, choices=DEVICES)


def _quiet() -> bool:
    return option(False, _QUIET_HELP)


def _checkpoint() -> Path:
    return option(help="DaGAN .pth.tar or .safetensors checkpoint", metavar="CKPT")


def _depth_weights() -> Path | None:
    return option(None, "face-depth weights folder or .safetensors", metavar="DIR")


def _output_folder(help: str, metavar: str) -> Path:  # noqa: A002
    # Every command that writes a folder takes --out and --output alike.
    return option(help=help, metavar=metavar, names=("--out", "--output"))


@dataclass
class TrainOptions:
    """Everything ``dagan train`` takes."""

    data: Path = option(help="folder with train/ and test/", metavar="DIR")
    out: Path = _output_folder("run folder: checkpoint, log, visuals", "RUN_DIR")
    config: Path | None = option(None, "original DaGAN YAML or dagan's own schema", metavar="CFG", required=True)
    resume: bool = option(False, "continue RUN_DIR/checkpoint.pth.tar exactly")
    max_steps: int | None = option(
        None,
        "at most N steps (never past train.num_epochs; default: all of them)",
        metavar="N",
        parse="positive_int",
    )
    depth_weights: Path | None = option(None, "frozen face-depth weights: folder or .safetensors", metavar="DIR")
    vgg_weights: Path | None = option(None, "torchvision vgg19-dcbb9e9d.pth", metavar="PATH")
    seed: int = option(0, "random seed", parse="non_negative_int")
    checkpoint_every: int = option(500, "steps between checkpoints", metavar="N", parse="positive_int")
    log_every: int = 10
    visualize_every: int = 200
    validate_every: int = 200
    validation_pairs: int = 16
    workers: int = option(2, _WORKERS_HELP, metavar="N", parse="non_negative_int")
    cache_clips: int = option(0, "keep N decoded clips per worker", metavar="N", parse="non_negative_int")
    device: str = _device()
    precision: str = option(
        InferenceConfig.precision,
        "arithmetic precision (fp32 is exact; bf16/fp16 train under autocast, fp16 on GPU only)",
        choices=typing.get_args(Precision),
    )
    compile: bool = option(False, "compile the networks with torch.compile (slow first step)")
    low_memory: bool = option(
        False, "recompute the generator's and keypoint detector's activations in backward: same losses, slower"
    )
    quiet: bool = _quiet()


@dataclass
class DepthTrainOptions:
    """Everything ``dagan train-depth`` takes."""

    data: Path = option(help="folder with train/ and test/ clips", metavar="DIR")
    out: Path = _output_folder("run folder: encoder.pth, depth.pth, log, visuals", "RUN_DIR")
    layers: int = option(18, "ResNet depth of the encoder", parse="whole_number", choices=(18, 50))
    size: int = option(256, "training frame size", parse="depth_size")
    resume: bool = option(False, "continue RUN_DIR exactly where it stopped")
    max_steps: int | None = option(None, "stop after N steps", metavar="N", parse="positive_int")
    epochs: int = 20
    batch_size: int = option(4, "frame triplets per step", metavar="N", parse="batch_size")
    learning_rate: float = option(
        1e-4, "Adam learning rate; with --resume, replaces the saved run's rate", metavar="LR", parse="positive_float"
    )
    #: On --resume, replace the saved run's learning rate (for example to decay it by hand).
    override_learning_rate: bool = False
    #: The learning rate drops tenfold for the last quarter of the steps (monodepth2: epoch 15 of 20).
    lr_decay_at: float = 0.75
    stride: int = option(1, "frames between neighbours", metavar="K", parse="positive_int")
    seed: int = option(0, "random seed", parse="non_negative_int")
    workers: int = option(2, _WORKERS_HELP, metavar="N", parse="non_negative_int")
    #: The loader's workers are forked anew each epoch and share the decoded clips.
    cache_clips: int = option(
        0,
        "decode N clips once at the start (memory: N x frames x size^2 x 12 bytes)",
        metavar="N",
        parse="non_negative_int",
    )
    checkpoint_every: int = 500
    log_every: int = 10
    visualize_every: int = 200
    validate_every: int = option(
        500,
        "score the depth on test/ every N steps when it has dagan synth ground truth: log.jsonl val_* and "
        "validation.png (0: never)",
        metavar="N",
        parse="non_negative_int",
    )
    #: Frames per test clip that validation scores (--eval takes 8).
    validation_frames: int = 4
    automask: bool = True
    #: Translation = this x the pose head's raw output; sets where the free depth scale settles.
    translation_scale: float = option(
        MONODEPTH2_MOTION_SCALE,
        "the pose network's translation is S times its raw output (monodepth2's); raise it when the log's "
        "near_bound stays high (docs/depth.md)",
        metavar="S",
        parse="positive_float",
    )
    intrinsics: tuple[float, float, float, float] | None = option(
        None,
        "known camera as fractions of the image width/height (dagan synth: 0.95,0.95,0.5,0.5); "
        "by default the pose network learns it",
        metavar="FX,FY,CX,CY",
        parse="intrinsics",
    )
    device: str = _device()
    quiet: bool = _quiet()


@dataclass
class GenerateOptions:
    """Everything ``dagan generate`` takes."""

    checkpoint: Path = _checkpoint()
    out: Path = _output_folder("folder for the generated videos and images", "DIR")
    depth_weights: Path | None = _depth_weights()
    source_dir: Path | None = option(None, "source images (or videos) named like the drivers", metavar="S")
    driving_dir: Path | None = option(None, "driving images or videos", metavar="D")
    pairs_csv: Path | None = option(
        None, "rows source,driving[,frame] (vox_evaluation.csv)", metavar="CSV", names=("--pairs",)
    )
    root: Path | None = option(None, "folder the CSV's relative paths start from", metavar="R")
    mode: Mode = option(
        "cross",
        "self: reconstruct the driving video (absolute keypoints); cross: relative motion",
        choices=("self", "cross"),
    )
    batch_size: int | None = option(
        None, "driving frames per batch", metavar="N", parse="batch_size", default_text="1 on CPU, 8 on GPU"
    )
    device: str = _device()
    inference: InferenceConfig = option(default_factory=InferenceConfig, only=("precision", "compile"))
    quiet: bool = _quiet()


@dataclass
class EvaluateOptions:
    """Everything ``dagan evaluate`` takes."""

    generated: Path = option(help="folder of generated images or videos", metavar="G")
    out: Path = _output_folder("folder for metrics.json, metrics.txt and plots", "REPORT_DIR")
    driving: Path | None = option(None, "folder of driving (ground-truth) files, same names", metavar="D")
    source: Path | None = option(None, "folder of source files, same names", metavar="S")
    metrics: tuple[str, ...] = option(ALL_METRICS, "comma-separated", parse="names")
    max_samples: int | None = option(None, "only the first N items", metavar="N", parse="positive_int")
    save_visuals: bool = option(False, "write source | driving | generated triplets")
    syncnet_weights: Path | None = option(None, "syncnet network weights", metavar="PATH")
    lpips_weights: Path | None = option(None, "lpips network weights", metavar="PATH")
    arcface_weights: Path | None = option(None, "arcface network weights", metavar="PATH")
    fid_weights: Path | None = option(None, "fid network weights", metavar="PATH")
    landmark_weights: Path | None = option(
        None,
        "a dagan train-landmarks network: AKD on synthetic heads against their ground-truth landmarks",
        metavar="PATH",
    )
    device: str = _device()
    batch_size: int = option(20, "windows per network batch", metavar="N", parse="batch_size")
    quiet: bool = _quiet()


_FOOTAGE = "real footage (needs 'dagan[face]')"


@dataclass
class AnimateOptions:
    """Everything ``dagan animate`` takes; the fields before ``crop`` are ``animate_files``'s arguments."""

    source: tuple[Path, ...] = option(
        help="source portrait (PNG/JPEG, any size); several images or a folder give one output each, named "
        "after its source, in the --output folder (the driving video is read and its motion computed once)",
        metavar="IMAGE",
        many=True,
    )
    driving: Path = option(
        help="driving video or frame folder; or one image, animated into one image (absolute motion, or "
        "relative to --reference)",
        metavar="VIDEO_OR_FRAME_DIR",
    )
    checkpoint: Path | None = option(
        None,
        "DaGAN .pth.tar or .safetensors checkpoint (or, with --backend onnxruntime, a dagan export-onnx folder); "
        + _OR_BUNDLED,
        metavar="CKPT",
    )
    depth_weights: Path | None = option(
        None, _DEPTH_FOLDER_HELP + "; may be omitted when the checkpoint .safetensors holds them", metavar="DIR"
    )
    #: A string: a trailing slash asks for a frame folder.
    output: str | None = option(
        None,
        "an .mp4 (H.264, driving fps and audio) or a folder for PNG frames (default: result.mp4; "
        "for a still driving image, an OUT.png, default result.png)",
        metavar="OUT.mp4|OUT_DIR/",
        names=("--output", "--out"),
    )
    relative: bool = option(
        True,
        "relative motion (default)",
        negation=("--absolute", "absolute keypoint positions"),
        default_text="",
    )
    adapt_scale: bool = option(
        True,
        "adapt movement scale (default)",
        negation=("--no-adapt-scale", "use movement as it is"),
        default_text="",
    )
    best_frame: int | None = option(None, "animate from frame N", metavar="N", parse="non_negative_int", group="start")
    reference: str | None = option(
        None,
        "the neutral face relative motion is measured from: an image (say a neutral photo of the driving "
        "person) or driving frame N (as --best-frame N); default: the first driving frame",
        metavar="IMAGE|N",
        group="start",
    )
    find_best_frame: bool = option(
        False,
        "start from the driving frame whose face pose is closest to the source's (needs 'dagan[face]')",
        group="start",
    )
    smooth: float = option(
        0.0,
        "steady the driving motion: a One-Euro filter on the keypoints with a time constant of S frames "
        "for a still head (0: off, as the published results; docs/smoothing.md measures S)",
        metavar="S",
        parse="non_negative_float",
    )
    device: str = _device()
    batch_size: int | None = option(
        None,
        "driving frames per batch",
        metavar="N",
        parse="batch_size",
        default_text="1 on CPU, where batching buys no speed; 8 on GPU",
    )
    save_depth: Path | None = option(None, "also write the driving depth as a video", metavar="DEPTH.mp4")
    depth_style: str = option(
        "colour",
        "how --save-depth and the side-by-side panel draw depth: a colour map over one range per video "
        "(colour), or the original demo's grey 1 - d / max d (nearly black on the bundled model)",
        choices=DEPTH_STYLES,
    )
    side_by_side_output: bool = option(
        False, "write source | driving | depth | result panels as the output", names=("--side-by-side",)
    )
    save_side_by_side: Path | None = option(
        None, "also write source | driving | depth | result panels as a video", metavar="PANELS.mp4"
    )
    inference: InferenceConfig = option(
        default_factory=InferenceConfig, only=("precision", "compile", "backend", "cpu_workers")
    )
    overwrite: bool = option(
        False, "an --output folder may hold an earlier run's frames, which are replaced (never other files)"
    )
    quiet: bool = _quiet()
    crop: bool = option(
        False,
        "cut the source photo's face and the driving video's clips as 'dagan crop' does before animating "
        "(any size of photo and video; each driving clip is animated relative to its own first frame)",
        section=_FOOTAGE,
    )
    paste_back: bool = option(
        False,
        "with --crop: blend the animated face back into the source photo at its full resolution",
        section=_FOOTAGE,
    )
    face: str | None = option(
        None,
        "with --crop: which face of the source photo to animate, numbered from 0 left to right, or all",
        metavar="N|all",
        section=_FOOTAGE,
        default_text="the largest",
    )
    mask_feather: float | None = option(
        None,
        "with --paste-back: the soft edge of the face-and-hair mask, in face sizes (docs/crop.md)",
        metavar="F",
        parse="non_negative_float",
        section=_FOOTAGE,
        default_text=f"{CropConfig.mask_feather:g}",
    )
    detect_every: int | None = option(
        None,
        "detect faces on every K-th frame and at scene cuts, following them in between (1 detects on every frame)",
        metavar="K",
        parse="positive_int",
        section=_FOOTAGE,
        default_text=str(CropConfig.detect_every),
    )
    detect_size: int | None = option(
        None,
        f"shrink frames to this long side for face detection (faces of about 80 pixels and more at that size are "
        f"found; photos use {CropConfig.photo_detect_factor:g}x)",
        metavar="PX",
        parse="positive_int",
        section=_FOOTAGE,
        default_text=str(CropConfig.detect_size),
    )

    def files_arguments(self) -> dict[str, object]:
        """The keyword arguments of ``animate_files``: the fields after its five positional ones, before ``crop``."""
        names = [f.name for f in fields(self)]
        return {name: getattr(self, name) for name in names[5 : names.index("crop")]}


@dataclass
class SynthOptions:
    """Everything ``dagan synth`` takes (``data.synth.write_dataset``'s arguments)."""

    out: Path = _output_folder("dataset folder: train/ and test/ clips, with ground truth", "DIR")
    identities: int = option(
        10,
        "synthetic people (a fifth, at least one, held out for test/ when there are two or more)",
        metavar="N",
        parse="positive_int",
    )
    clips_per_identity: int = option(2, "clips per person", metavar="K", parse="positive_int")
    frames: int = option(64, "frames per clip", metavar="F", parse="positive_int")
    size: int = option(256, "even, at least 16", metavar="S", parse="even_size")
    seed: int = option(0, "random seed: the same seed renders the same dataset", metavar="X", parse="non_negative_int")
    frame_format: str = option("mp4", "clips as mp4 files or PNG folders", choices=("mp4", "png"), names=("--format",))
    still_head: bool = option(
        False,
        "each clip keeps one head pose; only the camera moves (and the mouth and eyes): a static scene "
        "for self-supervised depth (docs/depth.md)",
    )
    quiet: bool = _quiet()


@dataclass
class SynthEvalOptions:
    """Everything ``dagan synth-eval`` takes (``data.synth_eval.write_eval_set``'s arguments)."""

    data: Path = option(help="a dagan synth dataset (its synth.json)", metavar="DIR")
    out: Path = _output_folder("folder for the pairs, their ground truth and the demo inputs", "DIR")
    size: int | None = option(None, "frame size", metavar="S", parse="even_size", default_text="the dataset's")
    quiet: bool = _quiet()


@dataclass
class LandmarkTrainOptions:
    """Everything ``dagan train-landmarks`` takes (``pipelines.landmarks.train_landmarks``'s arguments)."""

    data: Path = option(help="a dagan synth dataset", metavar="DIR")
    out: Path = option(help="where the weights go", metavar="FILE.pth", names=("--out", "--output"))
    size: int = option(64, "frame size", metavar="S", parse="even_size")
    steps: int = option(1500, "training steps", metavar="N", parse="positive_int")
    seed: int = option(0, "random seed", parse="non_negative_int")
    quiet: bool = _quiet()


@dataclass
class CropOptions:
    """Everything ``dagan crop`` takes; the framing and tracking defaults are ``CropConfig``'s."""

    input: Path = option(help="a video, a photo, or a folder of them", metavar="VIDEO|IMAGE|DIR")
    out: Path = _output_folder("output folder (new or empty)", "DIR")
    size: int = option(CropConfig.size, "side of the crops in pixels", parse="even_size")
    increase: float = option(
        CropConfig.increase,
        "margin added on each side of the VoxCeleb framing, as a fraction of the box",
        metavar="X",
        parse="non_negative_float",
    )
    iou: float = option(
        CropConfig.iou,
        "a clip ends when its face's box overlaps the clip's first box by less than this",
        parse="fraction",
    )
    min_frames: int = option(
        CropConfig.min_frames, "skip clips shorter than N frames", metavar="N", parse="positive_int"
    )
    format: str = option(CropConfig.format, "clips as videos or frame folders", choices=("mp4", "png"))
    quiet: bool = _quiet()


@dataclass
class DepthOptions:
    """Everything ``dagan depth`` takes (``pipelines.depth.depth_files``'s arguments)."""

    weights: Path = option(help="folder with encoder.pth and depth.pth", metavar="DIR")
    source: Path = option(help="an image, a video or a folder of frames", metavar="IMAGE|VIDEO|DIR", names=("--input",))
    out: Path = _output_folder("output folder", "OUT")
    raw: str = option("npy", "raw depth format", choices=("npy", "png16", "none"))
    ply: bool = option(False, "also write a coloured point cloud per frame")
    focal: float | None = option(None, "focal length in image widths", parse="positive_float", default_text="learned")
    size: int = option(256, "the network's input size", parse="depth_size")
    batch_size: int = option(8, "frames per network batch", parse="batch_size")
    device: str = _device()
    quiet: bool = _quiet()


@dataclass
class ExportOnnxOptions:
    """Everything ``dagan export-onnx`` takes."""

    checkpoint: Path = _checkpoint()
    out: Path = _output_folder("folder for the .onnx files and onnx.json", "DIR")
    depth_weights: Path | None = _depth_weights()
    size: int | None = option(
        None, "frame size the graphs take", metavar="S", parse="depth_size", default_text="the model's"
    )


@dataclass
class DemoOptions:
    """Everything ``dagan demo`` takes (``pipelines.demo.run_demo``'s arguments)."""

    output_dir: Path = option(Path("dagan-demo"), "folder for the videos", metavar="DIR", names=("--output", "--out"))
    device: str = _device()
    quiet: bool = _quiet()


@dataclass
class AppOptions:
    """Everything ``dagan app`` takes."""

    host: str = option(
        "127.0.0.1",
        "address to serve on; 0.0.0.0 (every network interface) must be asked for, and is warned about",
        metavar="ADDR",
    )
    port: int = option(7860, "port to serve on", metavar="PORT", parse="port")
    checkpoint: Path | None = option(None, f"DaGAN .pth.tar or .safetensors checkpoint; {_OR_BUNDLED}", metavar="CKPT")
    depth_weights: Path | None = option(None, _DEPTH_FOLDER_HELP, metavar="DIR")
    max_upload_mb: int = option(50, "largest upload accepted, in megabytes", metavar="MB", parse="positive_int")
    max_seconds: float = option(60.0, "longest driving video accepted, in seconds", metavar="S", parse="positive_float")
    concurrency: int = option(
        1,
        "animations run at once; the others wait in a queue, with their place shown",
        metavar="N",
        parse="positive_int",
    )
    device: str = _device()
