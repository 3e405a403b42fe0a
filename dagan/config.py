"""Typed configuration: the one place that defines every model and training setting.

Each network takes its own section (for example ``KeypointDetectorConfig``) in its
constructor. ``load_config`` reads both the project's own YAML schema (sections named
like the dataclass fields below) and the original DaGAN ``config/*.yaml`` files.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from dagan.errors import DaganError, first_line

#: Images and video frames above this many pixels are refused before decoding (``--max-pixels``).
DEFAULT_MAX_PIXELS = 50_000_000

#: Where the networks may run (``--device``); "auto" picks CUDA, then Apple MPS, then CPU.
DEVICES = ("auto", "cpu", "cuda", "mps")

#: How ``dagan animate`` draws the driving depth: a colour map over one range per video, or the original's grey.
DEPTH_STYLES = ("colour", "original")

#: Every metric ``dagan evaluate`` computes, in report order (its default ``--metrics``).
ALL_METRICS = ("psnr", "ssim", "l1", "lpips", "fid", "niqe", "akd", "aed", "csim", "prmse", "lse_d", "lse_c")

#: monodepth2's factor between the pose head's raw output and the translation (and the rotation).
MONODEPTH2_MOTION_SCALE = 0.01

GeneratorVariant = Literal["depth_aware", "spade"]


@dataclass(frozen=True)
class Flag:
    """How an options field appears on the command line: ``dagan.cli`` builds its parsers from these.

    The field's own default is the flag's default (the parser passes on only what was given), so
    each default is written once, on the dataclass, and the help text shows it.
    """

    help: str
    metavar: str | None = None
    #: The name of the ``dagan.cli`` value parser that checks the text ("positive_int", ...).
    parse: str | None = None
    choices: tuple | None = None
    #: The flag and its aliases; default ``--field-name``.
    names: tuple[str, ...] = ()
    #: For a boolean that defaults to true: the flag that turns it off, and its help.
    negation: tuple[str, str] | None = None
    #: Fields of one group are mutually exclusive.
    group: str | None = None
    #: The title of the help section the flag is listed under.
    section: str | None = None
    required: bool = False
    #: Takes one value or more (``nargs="+"``).
    many: bool = False
    #: For a field that is itself a dataclass: which of its flagged fields this command offers.
    only: tuple[str, ...] = ()
    #: Shown instead of the default where the default is worked out at run time.
    default_text: str | None = None


def option(default: Any = dataclasses.MISSING, help: str = "", **flag: Any) -> Any:  # noqa: A002
    """A dataclass field that is also a command-line flag (see ``Flag``)."""
    factory = flag.pop("default_factory", dataclasses.MISSING)
    return field(default=default, default_factory=factory, metadata={"flag": Flag(help, **flag)})


@dataclass
class KeypointDetectorConfig:
    """Keypoint detector on RGB-D input (hourglass, softmax heatmaps, jacobians)."""

    num_kp: int = 15
    num_channels: int = 4
    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    temperature: float = 0.1
    estimate_jacobian: bool = True
    scale_factor: float = 0.25
    single_jacobian_map: bool = False
    pad: int = 0


@dataclass
class DenseMotionConfig:
    """Dense motion network: keypoint motions blended by a predicted mask."""

    num_kp: int = 15
    num_channels: int = 3
    block_expansion: int = 64
    max_features: int = 1024
    num_blocks: int = 5
    scale_factor: float = 0.25
    kp_variance: float = 0.01
    estimate_occlusion_map: bool = True
    #: How warps read the [-1, 1] keypoint grid. The original samples with ``align_corners=False``,
    #: which takes the grid's end points for pixel edges: even the identity motion shrinks the source
    #: by (n-1)/n towards its centre, resamples it between pixels and half-fades its border rows and
    #: columns. True samples exactly where the grid points (the bundled demo model is trained so).
    #: The occlusion map, a mask rather than coordinates, is resized as in the original either way.
    align_corners: bool = False


@dataclass
class GeneratorConfig:
    """Depth-aware generator; ``variant`` picks the plain or the SPADE decoder."""

    variant: GeneratorVariant = "depth_aware"
    num_channels: int = 3
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    num_bottleneck_blocks: int = 6
    dense_motion: DenseMotionConfig = field(default_factory=DenseMotionConfig)
    #: Not in the original (off by default): the plain decoder also predicts a per-pixel mask and
    #: returns mask x the source image warped at full resolution + (1 - mask) x its own image. A
    #: small decoder blurs what it rebuilds; where the motion is right, the warped source is sharp.
    blend_deformed: bool = False


@dataclass
class DiscriminatorConfig:
    """Multi-scale patch discriminator with keypoint heatmaps as extra channels."""

    num_kp: int = 15
    num_channels: int = 3
    scales: tuple[float, ...] = (1,)
    block_expansion: int = 32
    max_features: int = 512
    num_blocks: int = 4
    use_kp: bool = True
    sn: bool = False
    kp_variance: float = 0.01


#: The depth encoder halves a frame five times, and the decoder's reflection padding needs at
#: least 2x2 at the bottom: the face-depth network takes sides that are multiples of 32, from 64.
DEPTH_SIZE_MULTIPLE = 32
DEPTH_MIN_SIZE = 64


def check_depth_size(size: int) -> None:
    """Raise ``DaganError`` unless the face-depth network can take ``size`` x ``size`` frames."""
    if size < DEPTH_MIN_SIZE or size % DEPTH_SIZE_MULTIPLE:
        raise DaganError(
            f"the face-depth network takes a multiple of {DEPTH_SIZE_MULTIPLE} pixels, at least {DEPTH_MIN_SIZE}; "
            f"got {size}"
        )


@dataclass
class DepthConfig:
    """Face-depth network: a ResNet encoder (torchvision's layout) and a 4-scale disparity decoder."""

    num_layers: int = 18
    scales: tuple[int, ...] = (0, 1, 2, 3)
    height: int = 256
    width: int = 256


@dataclass
class ModelConfig:
    """All networks of DaGAN."""

    kp_detector: KeypointDetectorConfig = field(default_factory=KeypointDetectorConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)

    @property
    def num_kp(self) -> int:
        """Number of keypoints shared by every network."""
        return self.kp_detector.num_kp

    def with_num_kp(self, num_kp: int) -> ModelConfig:
        """Return a copy where every network uses ``num_kp`` keypoints."""
        return dataclasses.replace(
            self,
            kp_detector=dataclasses.replace(self.kp_detector, num_kp=num_kp),
            generator=dataclasses.replace(
                self.generator,
                dense_motion=dataclasses.replace(self.generator.dense_motion, num_kp=num_kp),
            ),
            discriminator=dataclasses.replace(self.discriminator, num_kp=num_kp),
        )


@dataclass
class LossWeights:
    """Weights of the training objective; the names are the original ones."""

    generator_gan: float = 1.0
    discriminator_gan: float = 1.0
    feature_matching: tuple[float, ...] = (10, 10, 10, 10)
    perceptual: tuple[float, ...] = (10, 10, 10, 10, 10)
    equivariance_value: float = 10.0
    equivariance_jacobian: float = 10.0
    kp_distance: float = 10.0
    kp_prior: float = 0.0
    kp_scale: float = 0.0
    depth_constraint: float = 0.0


@dataclass
class TransformConfig:
    """Random affine + thin-plate-spline warp used by the equivariance losses."""

    sigma_affine: float = 0.05
    sigma_tps: float = 0.005
    points_tps: int = 5


@dataclass
class TrainConfig:
    """Optimisation settings."""

    num_epochs: int = 150
    num_repeats: int = 75
    epoch_milestones: tuple[int, ...] = ()
    lr_generator: float = 2.0e-4
    lr_discriminator: float = 2.0e-4
    lr_kp_detector: float = 2.0e-4
    batch_size: int = 4
    scales: tuple[float, ...] = (1, 0.5, 0.25, 0.125)
    transform: TransformConfig = field(default_factory=TransformConfig)
    loss_weights: LossWeights = field(default_factory=LossWeights)
    perceptual_backbone: Literal["vgg19", "l1_pyramid"] = "vgg19"


@dataclass
class DataConfig:
    """Dataset settings."""

    frame_shape: tuple[int, int, int] = (256, 256, 3)
    id_sampling: bool = True
    horizontal_flip: bool = True
    time_flip: bool = True
    jitter_brightness: float = 0.1
    jitter_contrast: float = 0.1
    jitter_saturation: float = 0.1
    jitter_hue: float = 0.1


Precision = Literal["fp32", "bf16", "fp16"]
Backend = Literal["torch", "onnxruntime"]


@dataclass
class InferenceConfig:
    """How animation runs. ``fuse`` and ``channels_last`` are exact; the rest are opt-in.

    ``fuse`` folds batch norms and makes up-convolutions sub-pixel (``dagan.nn.fuse``);
    ``precision`` other than fp32 runs under autocast; ``compile`` applies ``torch.compile``.
    """

    precision: Precision = option(
        "fp32",
        "arithmetic precision (fp32 is exact; bf16/fp16 run under autocast, fp16 on GPU only)",
        choices=typing.get_args(Precision),
    )
    compile: bool = option(False, "compile the networks with torch.compile (slow first call)")
    fuse: bool = True
    channels_last: bool = True
    backend: Backend = option(
        "torch",
        "run the networks in torch or in onnxruntime (a torch checkpoint is exported first)",
        choices=typing.get_args(Backend),
    )
    #: Small convolutions scale poorly across cores, so whole frames in parallel run faster.
    cpu_workers: int = option(
        0,
        "on CPU, batches computed at once, each on its share of the cores (0: one per core, at most 4)",
        metavar="N",
        parse="non_negative_int",
    )


CropFormat = Literal["mp4", "png"]


@dataclass
class CropConfig:
    """How ``dagan crop`` (and ``animate --crop``) finds, follows and frames faces in real footage.

    The framing reproduces the VoxCeleb crops the published checkpoints were trained on, as measured
    on the sample driving video (``../shared/data/driving.mp4``, 184 frames of a 256-pixel crop):
    dlib's face box is 0.49 of the crop's side (125.6 of 256 pixels, std 6), and the box centre sits
    0.02 box sides right of and 0.11 box sides below the crop centre. See ``docs/crop.md``.
    """

    size: int = 256
    #: A margin added on each side, as a fraction of the framed box's side (first-order-model's ``--increase``).
    increase: float = 0.0
    #: The largest ``increase`` taken: five times the framed side is already far more than any face needs.
    max_increase: float = 2.0
    #: A face belongs to a clip while its box overlaps the clip's first box by at least this IoU.
    iou: float = 0.25
    min_frames: int = 10
    format: CropFormat = "mp4"
    #: Faces are detected on every k-th frame (and at scene cuts) and followed from detection to detection.
    detect_every: int = 5
    #: Frames are shrunk to this long side for detection; dlib's HOG finds faces of ~80 pixels and up there.
    detect_size: int = 640
    #: Photos are searched at this many times ``detect_size``: done once, it can afford to find smaller faces.
    photo_detect_factor: float = 2.5
    face_fraction: float = 0.49
    face_offset_x: float = 0.02
    face_offset_y: float = 0.11
    #: Mean absolute change of a 64-pixel thumbnail (RGB in [0, 1]) between frames that counts as a cut.
    scene_cut: float = 0.12
    #: A face missed by this many detections in a row is lost: its clip ends at its last detection.
    lost_after: int = 2
    #: Faces narrower than this (input pixels) are too small to animate: warned about and skipped.
    min_face: int = 64
    #: ``animate --paste-back``: the blur of the face-and-hair mask's edge, in face sizes (``docs/crop.md``).
    mask_feather: float = 0.06


@dataclass
class Config:
    """The whole project configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)


#: Keys that older files hold and that no longer mean anything here: read and dropped, never refused.
#: ``checkpoint_freq`` is the original's checkpoint cadence in epochs; dagan checkpoints every
#: ``--checkpoint-every`` steps, and configs written by its earlier versions still carry the key.
RETIRED_KEYS = {"TrainConfig": ("checkpoint_freq",)}


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, recursing into nested sections."""
    if not isinstance(values, dict):
        raise DaganError(f"config section {where} must be a mapping, got {type(values).__name__}")
    values = {k: v for k, v in values.items() if k not in RETIRED_KEYS.get(cls.__name__, ())}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise DaganError(f"config section {where} has unknown keys: {', '.join(unknown)}")
    kwargs = {}
    for name, value in values.items():
        default = fields[name].default_factory() if fields[name].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}")
        elif fields[name].type == "bool" and not isinstance(value, bool):
            raise DaganError(f"config {where}.{name} must be true or false, got {value!r}")
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


#: Whole-number fields that may be 0; every other whole number must be at least 1.
_MAY_BE_ZERO = {"pad", "num_bottleneck_blocks", "epoch_milestones", "scales"}
#: Real-valued fields that must be above 0; every other one must be 0 or more.
_MUST_BE_POSITIVE = {"temperature", "scale_factor", "kp_variance", "lr_generator", "lr_discriminator", "lr_kp_detector"}


def _check_number(value: Any, kind: type, name: str, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int if kind is int else int | float):
        wanted = "a whole number" if kind is int else "a number"
        raise DaganError(f"config {where}.{name} must be {wanted}, got {value!r}")
    if not math.isfinite(value):
        raise DaganError(f"config {where}.{name} must be finite, got {value!r}")
    low = 0 if (name in _MAY_BE_ZERO or kind is float) else 1
    if value < low or (name in _MUST_BE_POSITIVE and value <= 0):
        bound = "above 0" if name in _MUST_BE_POSITIVE else f"at least {low}"
        raise DaganError(f"config {where}.{name} must be {bound}, got {value!r}")


def validate_config(config: Any, where: str = "config") -> Any:
    """Check the type and range of every field a user sets, recursively; one line naming the field."""
    hints = typing.get_type_hints(type(config))
    for item in dataclasses.fields(config):
        value, kind, name = getattr(config, item.name), hints[item.name], item.name
        if dataclasses.is_dataclass(value):
            validate_config(value, f"{where}.{name}")
        elif typing.get_origin(kind) is Literal:
            if value not in typing.get_args(kind):
                choices = ", ".join(map(str, typing.get_args(kind)))
                raise DaganError(f"config {where}.{name} must be one of {choices}, got {value!r}")
        elif kind is bool:
            if not isinstance(value, bool):
                raise DaganError(f"config {where}.{name} must be true or false, got {value!r}")
        elif kind in (int, float):
            _check_number(value, kind, name, where)
        elif typing.get_origin(kind) is tuple:
            element = typing.get_args(kind)[0]
            if not isinstance(value, tuple):
                raise DaganError(f"config {where}.{name} must be a list, got {value!r}")
            for entry in value:
                _check_number(entry, element, name, where)
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-dict (YAML/JSON friendly) form of any config dataclass."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def config_from_dict(values: dict[str, Any]) -> Config:
    """Build a ``Config`` from the project's own schema."""
    return _build(Config, values, "config")


def config_from_original(values: dict[str, Any]) -> Config:
    """Translate an original DaGAN/first-order-model YAML mapping into a ``Config``."""
    try:
        model = values["model_params"]
        common = model.get("common_params", {})
        num_kp = int(common.get("num_kp", 15))
        channels = int(common.get("num_channels", 3))
        jacobian = bool(common.get("estimate_jacobian", True))
        kp_params = dict(model.get("kp_detector_params", {}))
        gen_params = dict(model.get("generator_params", {}))
        dense = dict(gen_params.pop("dense_motion_params", {}))
        occlusion = bool(gen_params.pop("estimate_occlusion_map", True))
        disc_params = dict(model.get("discriminator_params", {}))
        kp_detector = KeypointDetectorConfig(
            num_kp=num_kp,
            num_channels=channels + 1,
            estimate_jacobian=jacobian,
            **kp_params,
        )
        generator = GeneratorConfig(
            num_channels=channels,
            dense_motion=DenseMotionConfig(
                num_kp=num_kp,
                num_channels=channels,
                estimate_occlusion_map=occlusion,
                **dense,
            ),
            **gen_params,
        )
        if "scales" in disc_params:
            disc_params["scales"] = tuple(disc_params["scales"])
        discriminator = DiscriminatorConfig(num_kp=num_kp, num_channels=channels, **disc_params)

        train_params = dict(values.get("train_params", {}))
        for retired in RETIRED_KEYS["TrainConfig"]:
            train_params.pop(retired, None)
        weights = dict(train_params.pop("loss_weights", {}))
        transform = dict(train_params.pop("transform_params", {}))
        train = TrainConfig(
            transform=TransformConfig(**transform),
            loss_weights=_build(LossWeights, weights, "loss_weights"),
            **{k: tuple(v) if isinstance(v, list) else v for k, v in train_params.items()},
        )
        data_params = dict(values.get("dataset_params", {}))
        augment = data_params.get("augmentation_params", {})
        flips = augment.get("flip_param", {})
        jitter = augment.get("jitter_param", {})
        data = DataConfig(
            frame_shape=tuple(data_params.get("frame_shape", (256, 256, 3))),
            id_sampling=bool(data_params.get("id_sampling", True)),
            horizontal_flip=bool(flips.get("horizontal_flip", False)),
            time_flip=bool(flips.get("time_flip", False)),
            jitter_brightness=float(jitter.get("brightness", 0.0)),
            jitter_contrast=float(jitter.get("contrast", 0.0)),
            jitter_saturation=float(jitter.get("saturation", 0.0)),
            jitter_hue=float(jitter.get("hue", 0.0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DaganError(f"not a valid original DaGAN config: {exc}") from exc
    return Config(
        model=ModelConfig(kp_detector=kp_detector, generator=generator, discriminator=discriminator),
        train=train,
        data=data,
    )


def load_config(path: str | Path | None = None) -> Config:
    """Read a config file (own schema or original DaGAN YAML); ``None`` gives vox-adv-256."""
    if path is None:
        text = resources.files("dagan.configs").joinpath("vox-adv-256.yaml").read_text()
        where = "vox-adv-256.yaml"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise DaganError(f"cannot read config {path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError:
            raise DaganError(f"config {path} is not a text file (YAML)") from None
        where = str(path)
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DaganError(f"config {where} is not valid YAML: {first_line(exc)}") from exc
    if not isinstance(values, dict):
        raise DaganError(f"config {where} must be a YAML mapping")
    try:
        config = config_from_original(values) if "model_params" in values else config_from_dict(values)
    except TypeError as exc:  # a section given as a scalar, a key the dataclass lacks
        raise DaganError(f"config {where} is not a valid config ({first_line(exc)})") from exc
    return validate_config(config, where)
