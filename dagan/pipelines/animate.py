"""Animation: a source portrait driven by a video, streamed and batched.

The source's depth, keypoints and generator encodings are computed once; driving frames go
through depth, keypoints and the generator ``batch_size`` at a time. By default the networks run
fused (batch norms folded, sub-pixel up-convolutions) in channels-last layout: the same frames
as the plain networks to float rounding, faster. See ``InferenceConfig`` for the opt-in modes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from dagan.config import DEPTH_STYLES, DataConfig, InferenceConfig
from dagan.errors import DaganError
from dagan.io.atomic import check_frame_folder, check_outputs, check_writable_directory, removed_if_failed_empty
from dagan.io.colormap import VideoDisparityColours
from dagan.io.image import IMAGE_SUFFIXES, as_frame, list_frame_files, read_image, resize_frame, write_png
from dagan.io.streaming import BackgroundConsumer, ordered_map, prefetch
from dagan.io.video import DEFAULT_FPS, Mp4Writer, PngDirectoryWriter, VideoInfo, iter_frames, probe_video
from dagan.motion import KeypointSmoother, movement_scale, transfer_motion
from dagan.nn import Keypoints, SourceEncoding
from dagan.nn.fuse import fuse_for_inference
from dagan.options import AnimateOptions
from dagan.pipelines.distributed import select_device
from dagan.pipelines.memory import return_freed_memory
from dagan.pipelines.networks import AnimationNetworks, load_animation_networks
from dagan.pipelines.onnx_backend import OnnxNetworks, export_onnx, is_onnx_export
from dagan.pipelines.precision import autocast, check_precision

#: What ``Animator(...)`` takes as an image: a file, an array (uint8 pixels or a frame) or a PIL image.
ImageLike = str | Path | np.ndarray | Image.Image

#: Frames computed at once by default on CPU: one per core up to this many (each holds its activations).
MAX_DEFAULT_CPU_WORKERS = 4


def default_batch_size(device: torch.device) -> int:
    """Frames per batch when the user gives none.

    On CPU, batching buys no speed (the convolutions already use every core) and each extra
    frame costs ~100 MB of activations, so frames go one at a time; accelerators get 8.
    """
    return 1 if device.type == "cpu" else 8


@dataclass
class PreparedSource:
    """Everything computed from the source image alone."""

    image: torch.Tensor
    depth: torch.Tensor
    keypoints: Keypoints
    encoding: SourceEncoding


@dataclass
class AnimationOutput:
    """What ``Animator(source, driving)`` returns: every frame in memory, in driving order."""

    frames: list[np.ndarray]  # (H, W, 3) float32 in [0, 1]
    driving_depth: list[np.ndarray]  # (H, W) disparity of each driving frame
    fps: Fraction | None = None  # the driving video's, when it was a video
    audio_from: Path | None = None  # the driving video, when it has sound

    def save(self, path: str | Path) -> Path:
        """Write the frames as an MP4 (the driving fps and audio) or, for one frame, as ``.png`` too."""
        path = Path(path)
        if path.suffix.lower() == ".png" and len(self.frames) == 1:
            write_png(path, self.frames[0])
            return path
        if path.suffix.lower() != ".mp4":
            raise DaganError(f"cannot save {path}: give an .mp4 (or a .png for a single frame)")
        with Mp4Writer(path, self.fps or DEFAULT_FPS, self.audio_from) as writer:
            for frame in self.frames:
                writer.write(frame)
        return path


@dataclass
class AnimatedFrame:
    """One output frame with the inputs that made it; arrays are (H, W[, 3]) float32 in [0, 1]."""

    index: int
    prediction: np.ndarray
    driving: np.ndarray
    driving_depth: np.ndarray


def prepare_networks(
    networks: AnimationNetworks, device: torch.device, inference: InferenceConfig, in_place: bool = False
) -> AnimationNetworks:
    """Move the networks to ``device`` and apply the exact rewrites of ``inference`` (``Animator`` compiles).

    ``in_place=True`` rewrites the given networks instead of copies (they are then for running
    only), so their weights are never held twice.
    """
    networks = networks.to(device)
    nets = {"kp_detector": networks.kp_detector, "generator": networks.generator, "depth": networks.depth}
    for name, net in nets.items():
        # The keypoint detector keeps the original's arithmetic: its heatmap softmax (temperature 0.1)
        # and the warp amplify float32 rounding about 20-fold into the frames, while it costs about 5% of a frame.
        rewrite = name != "kp_detector"
        if inference.fuse and rewrite:
            net = fuse_for_inference(net, in_place=in_place)
        if inference.channels_last and rewrite:
            net = net.to(memory_format=torch.channels_last)
        nets[name] = net
    return AnimationNetworks(config=networks.config, frame_size=networks.frame_size, **nets)


class Animator:
    """Animate portraits with a loaded DaGAN model (the Python side of ``dagan animate``)."""

    def __init__(
        self,
        networks: AnimationNetworks | OnnxNetworks,
        device: str | torch.device = "auto",
        size: int | None = None,
        inference: InferenceConfig | None = None,
        *,
        own_networks: bool = False,
    ):
        """``own_networks=True`` lets the animator rewrite ``networks`` in place instead of copying them."""
        self.device = select_device(device) if isinstance(device, str) else device
        self.inference = inference or InferenceConfig()
        check_precision(self.inference.precision, self.device)
        if self.inference.cpu_workers < 0:
            raise DaganError(f"cpu_workers must be 0 (one per core) or more, got {self.inference.cpu_workers}")
        if isinstance(networks, OnnxNetworks):
            if self.inference.precision != "fp32" or self.inference.compile:
                raise DaganError("--backend onnxruntime runs fp32 graphs: drop --precision and --compile")
            self.networks, self.size = networks, networks.size
            self.inference = dataclasses.replace(self.inference, channels_last=False, backend="onnxruntime")
            return
        self.networks = prepare_networks(networks, self.device, self.inference, in_place=own_networks)
        self.size = size if size is not None else networks.frame_size
        if self.inference.compile:
            # Fused layers build weight forms on their first call; inside a compiled graph that call
            # would break the graph and compile it twice. One frame builds them first.
            frame = np.random.default_rng(0).random((self.size, self.size, 3), dtype=np.float32)
            self.animate_pairs([frame], [frame])
            for net in (self.networks.kp_detector, self.networks.generator, self.networks.depth):
                net.forward = torch.compile(net.forward, dynamic=False)
        # The rewrite freed the plain layers piece by piece: without a trim they stay resident.
        return_freed_memory()

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        depth_weights: str | Path | None = None,
        device: str = "auto",
        inference: InferenceConfig | None = None,
    ) -> Animator:
        """Load weights (original ``.pth.tar`` or ``.safetensors``) without any architecture flags.

        With the onnxruntime backend, ``checkpoint`` may also be an ``export-onnx`` folder; a torch
        checkpoint is then exported to a temporary folder first.
        """
        inference = inference or InferenceConfig()
        if inference.backend != "onnxruntime":
            networks = load_animation_networks(checkpoint, depth_weights)
            return cls(networks, device, inference=inference, own_networks=True)
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else None
        if is_onnx_export(checkpoint):
            return cls(OnnxNetworks.load(checkpoint, providers), device, inference=inference)
        with tempfile.TemporaryDirectory(prefix="dagan-onnx-") as tmp:
            networks = load_animation_networks(checkpoint, depth_weights)
            export_onnx(networks, tmp, networks.frame_size)
            return cls(OnnxNetworks.load(tmp, providers), device, inference=inference)

    @torch.inference_mode()
    def __call__(
        self,
        source: ImageLike,
        driving: ImageLike | Iterable[ImageLike],
        *,
        relative: bool | None = None,
        adapt_scale: bool = True,
        reference: ImageLike | None = None,
        smooth: float = 0.0,
        batch_size: int | None = None,
    ) -> AnimationOutput:
        """Animate ``source`` with ``driving`` in memory; each is a path, an array (uint8 or a frame) or a PIL image.

        ``driving`` is a video or frame-folder path, one image, or a sequence of frames. Motion is
        relative to the first driving frame (or ``reference``), except for one driving image with
        no reference, which gives absolute motion, as ``dagan animate`` does.
        """
        fps, audio = None, None
        if isinstance(driving, str | Path) and not is_still_image(driving):
            info = probe_video(driving)
            frames: Iterable[np.ndarray] = iter_frames(info)
            fps, audio, single = info.fps, (info.path if info.has_audio else None), False
        elif isinstance(driving, str | Path | Image.Image) or (isinstance(driving, np.ndarray) and driving.ndim < 4):
            frames, single = [as_frame(driving, self.size)], True
        else:
            frames, single = (as_frame(frame, self.size) for frame in driving), False
        initial = None if reference is None else as_frame(reference, self.size)
        relative = (not single or initial is not None) if relative is None else relative
        motion = {"relative": relative, "adapt_scale": adapt_scale, "initial_frame": initial, "smooth": smooth}
        motion.update(batch_size=batch_size, fps=float(fps or DEFAULT_FPS))
        animated = list(self.animate(as_frame(source, self.size), frames, **motion))
        return AnimationOutput([f.prediction for f in animated], [f.driving_depth for f in animated], fps, audio)

    def _to_tensor(self, frames: list[np.ndarray]) -> torch.Tensor:
        batch = torch.from_numpy(np.stack(frames).transpose(0, 3, 1, 2)).to(self.device)
        return batch.contiguous(memory_format=torch.channels_last) if self.inference.channels_last else batch

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.inference.precision, self.device)

    @torch.inference_mode()
    def depth_and_keypoints(self, images: torch.Tensor) -> tuple[torch.Tensor, Keypoints]:
        """Disparity and keypoints of a (B, 3, H, W) batch."""
        with self._autocast():
            depth = self.networks.depth(images)
            # Contiguous NCHW: the detector keeps the original's arithmetic (see prepare_networks).
            keypoints = self.networks.kp_detector(torch.cat([images, depth], dim=1).contiguous())
        # Motion transfer inverts jacobians: it runs in float32 whatever the precision.
        jacobian = None if keypoints.jacobian is None else keypoints.jacobian.float()
        return depth, Keypoints(keypoints.value.float(), jacobian)

    @torch.inference_mode()
    def prepare_source(self, source_image: np.ndarray) -> PreparedSource:
        """Resize the source and compute its depth, keypoints and generator encoding once."""
        return self._prepare(self._to_tensor([resize_frame(source_image, self.size)]))

    def _prepare(self, images: torch.Tensor) -> PreparedSource:
        depth, keypoints = self.depth_and_keypoints(images)
        with self._autocast():
            encoding = self.networks.generator.encode_source(images, depth)
        return PreparedSource(images, depth, keypoints, encoding)

    def _generate(self, source: PreparedSource, keypoints: Keypoints, depth: torch.Tensor) -> np.ndarray:
        """(B, H, W, 3) predictions for driving ``keypoints`` and ``depth``."""
        with self._autocast():
            out = self.networks.generator(
                source.image, keypoints, source.keypoints, source.depth, depth, encoding=source.encoding
            )
        return out["prediction"].float().permute(0, 2, 3, 1).cpu().numpy()

    @torch.inference_mode()
    def animate_pairs(self, sources: list[np.ndarray], drivers: list[np.ndarray]) -> np.ndarray:
        """Each source driven by its own driving image, with absolute keypoints, in one batch; (B, H, W, 3)."""
        if len(sources) != len(drivers) or not sources:
            raise ValueError("animate_pairs needs as many sources as drivers, at least one")
        source = self._prepare(self._to_tensor([resize_frame(image, self.size) for image in sources]))
        depth, keypoints = self.depth_and_keypoints(
            self._to_tensor([resize_frame(image, self.size) for image in drivers])
        )
        return self._generate(source, keypoints, depth)

    @torch.inference_mode()
    def animate(
        self,
        source_image: np.ndarray,
        driving: Iterable[np.ndarray],
        *,
        relative: bool = True,
        adapt_scale: bool = True,
        batch_size: int | None = None,
        initial_frame: np.ndarray | None = None,
        smooth: float = 0.0,
        fps: float = 25.0,
    ) -> Iterator[AnimatedFrame]:
        """Yield animated frames in driving order.

        Motion is taken relative to ``initial_frame`` (default: the first driving frame), which
        is how the original's ``--best_frame`` works: the frames before it are animated from it
        backwards and the frames after it forwards, giving the same result. ``smooth`` S > 0
        filters the driving keypoints over time (``KeypointSmoother``, time constant S frames at ``fps``).
        """
        options = {"relative": relative, "adapt_scale": adapt_scale, "batch_size": batch_size}
        options.update(initial_frame=initial_frame, smooth=smooth, fps=fps)
        with contextlib.closing(self.animate_many([source_image], driving, **options)) as frames:
            for (frame,) in frames:
                yield frame

    @torch.inference_mode()
    def animate_many(
        self,
        source_images: list[np.ndarray],
        driving: Iterable[np.ndarray],
        *,
        relative: bool = True,
        adapt_scale: bool = True,
        batch_size: int | None = None,
        initial_frame: np.ndarray | None = None,
        smooth: float = 0.0,
        fps: float = 25.0,
    ) -> Iterator[list[AnimatedFrame]]:
        """``animate`` for several sources at once: the driving depth and keypoints are computed once.

        Yields, per driving frame, one ``AnimatedFrame`` per source, in the sources' order.
        """
        batch_size = default_batch_size(self.device) if batch_size is None else batch_size
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not source_images:
            raise ValueError("animate_many needs at least one source")
        sources = [self.prepare_source(image) for image in source_images]
        frames = (resize_frame(frame, self.size) for frame in driving)
        if initial_frame is None:
            first = next(frames, None)
            if first is None:
                return
            frames = itertools.chain([first], frames)
            initial = first
        else:
            initial = resize_frame(initial_frame, self.size)
        _, kp_initial = self.depth_and_keypoints(self._to_tensor([initial]))
        scales = [movement_scale(s.keypoints, kp_initial) if relative and adapt_scale else 1.0 for s in sources]
        smoother = KeypointSmoother(smooth, fps)

        def animate_batch(batch: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
            # Runs on worker threads: inference mode and autocast are per thread.
            with torch.inference_mode():
                images = self._to_tensor(batch)
                depth, kp_driving = self.depth_and_keypoints(images)
                kp_driving = smoother(kp_driving)
                predictions = [
                    self._generate(
                        source, transfer_motion(source.keypoints, kp_driving, kp_initial, relative, scale), depth
                    )
                    for source, scale in zip(sources, scales, strict=True)
                ]
                depths = depth[:, 0].float().cpu().numpy()
            return predictions, batch, depths

        batches = iter(lambda: list(itertools.islice(frames, batch_size)), [])
        # The filter carries state from frame to frame: its batches must run one after another.
        workers, threads = (1 if smooth > 0 else self.cpu_workers()), torch.get_num_threads()
        share = max(1, threads // workers)
        try:
            index = 0
            # Each worker thread takes its share of the cores; the caller's threads are left alone.
            for predictions, batch, depths in ordered_map(
                animate_batch, batches, workers, lambda: torch.set_num_threads(share)
            ):
                for offset, (frame, depth) in enumerate(zip(batch, depths, strict=True)):
                    yield [AnimatedFrame(index, per_source[offset], frame, depth) for per_source in predictions]
                    index += 1
        finally:
            if workers > 1:
                # torch remembers the last count for threads started later: give them the caller's.
                torch.set_num_threads(threads)

    def cpu_workers(self) -> int:
        """How many batches run at once: several on CPU (see ``InferenceConfig.cpu_workers``), else one."""
        if self.device.type != "cpu" or self.inference.backend != "torch" or self.inference.compile:
            return 1
        return self.inference.cpu_workers or min(torch.get_num_threads(), MAX_DEFAULT_CPU_WORKERS)


def depth_to_image(depth: np.ndarray) -> np.ndarray:
    """Grey visualisation of a disparity map as the original demo draws it: 1 - d / max(d).

    On the bundled demo model that is nearly black (its disparities sit close to their maximum);
    ``depth_renderer("colour")`` is the default for that reason.
    """
    peak = float(depth.max())
    gray = 1.0 - depth / peak if peak > 0 else np.ones_like(depth)
    return np.repeat(gray[..., None], 3, axis=2).astype(np.float32)


def depth_renderer(style: str = "colour") -> Callable[[np.ndarray], np.ndarray]:
    """A function from one video's disparity frames to pictures, in ``style`` (see ``DEPTH_STYLES``)."""
    if style == "original":
        return depth_to_image
    if style == "colour":
        return VideoDisparityColours()
    raise DaganError(f"--depth-style must be one of {', '.join(DEPTH_STYLES)}, not {style!r}")


def side_by_side(
    source: np.ndarray, frame: AnimatedFrame, render_depth: Callable[[np.ndarray], np.ndarray] = depth_to_image
) -> np.ndarray:
    """source | driving | driving depth | result, each at the working size."""
    depth = render_depth(frame.driving_depth)
    return np.concatenate([source, frame.driving, depth, frame.prediction], axis=1)


@dataclass
class AnimateReport:
    """What ``animate_files`` wrote."""

    frames: int
    output: Path
    depth_output: Path | None
    seconds: float
    side_by_side_output: Path | None = None


def is_directory_output(output: str | Path) -> bool:
    """Whether ``--output`` names a folder: it ends in a slash or is an existing directory."""
    text = str(output)
    return text.endswith(("/", "\\")) or Path(text).is_dir()


def check_target(path: Path, what: str, suffix: str = ".mp4") -> None:
    """Refuse an output file with the wrong suffix or in a folder that does not exist."""
    if path.suffix.lower() != suffix:
        raise DaganError(f"{what} {path} must end in {suffix} (or, for --output, be a directory ending in /)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise DaganError(f"cannot write {path}: directory {parent} does not exist")


def _frame_at(info: VideoInfo, index: int, flag: str = "--best-frame") -> np.ndarray:
    for i, frame in enumerate(iter_frames(info)):
        if i == index:
            return frame
    raise DaganError(f"{flag} {index} is past the end of {info.path}")


def is_still_image(path: str | Path) -> bool:
    """Whether a driving input is one image (animated into one image), not a video or a frame folder."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def source_paths(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """``--source``: one image, several, or a folder of them (its images in name order)."""
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_dir():
            return [path]
        files = list_frame_files(path)
        if not files:
            raise DaganError(f"--source folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return files
    paths = [Path(item) for item in source]
    if not paths:
        raise DaganError("--source needs at least one image")
    return [file for path in paths for file in source_paths(path)]


def _outputs_per_source(sources: list[Path], output: str | Path, suffix: str) -> list[Path]:
    """``OUTPUT/<source stem><suffix>`` for each source: the output of several sources is a folder."""
    if not is_directory_output(output):
        raise DaganError(f"--output {output} must be a folder (ending in /) for several sources: one file per source")
    stems = [path.stem for path in sources]
    twice = sorted({stem for stem in stems if stems.count(stem) > 1})
    if twice:
        raise DaganError(f"two sources are named {twice[0]}: their outputs would take the same name")
    return [Path(output) / f"{stem}{suffix}" for stem in stems]


def parse_reference(text: str | int | Path | None) -> int | Path | None:
    """``--reference``: a driving frame index (digits) or the path of an image."""
    if text is None or isinstance(text, int):
        return text
    return int(text) if str(text).isdigit() else Path(text)


def animate_files(
    source: str | Path | Sequence[str | Path],
    driving: str | Path,
    checkpoint: str | Path,
    depth_weights: str | Path | None = None,
    output: str | Path | None = None,
    *,
    relative: bool = AnimateOptions.relative,
    adapt_scale: bool = AnimateOptions.adapt_scale,
    best_frame: int | None = AnimateOptions.best_frame,
    find_best_frame: bool = AnimateOptions.find_best_frame,
    reference: str | Path | int | None = AnimateOptions.reference,
    device: str = AnimateOptions.device,
    batch_size: int | None = AnimateOptions.batch_size,
    save_depth: str | Path | None = AnimateOptions.save_depth,
    side_by_side_output: bool = AnimateOptions.side_by_side_output,
    save_side_by_side: str | Path | None = AnimateOptions.save_side_by_side,
    quiet: bool = AnimateOptions.quiet,
    animator: Animator | None = None,
    inference: InferenceConfig | None = None,
    overwrite: bool = AnimateOptions.overwrite,
    depth_style: str = AnimateOptions.depth_style,
    smooth: float = AnimateOptions.smooth,
) -> AnimateReport:
    """The ``dagan animate`` job: files in, an MP4 (with the driving audio) or PNG frames out.

    A frame-folder ``output`` must be new or empty, or hold an earlier run's frames with ``overwrite``.
    ``depth_style`` draws the depth video and panel (``DEPTH_STYLES``). ``reference`` is the neutral
    face relative motion is measured from: driving frame N (as ``best_frame``) or an image. A still
    image as ``driving`` gives one image (``result.png`` by default): absolute motion, or relative
    to ``reference`` when one is given. ``smooth`` filters the driving motion (``KeypointSmoother``).
    Several sources (a list or a folder) give ``output/<source stem>.mp4`` each (default folder
    ``result/``), with the driving depth and keypoints computed once for all of them.
    """
    started = time.perf_counter()
    try:
        KeypointSmoother(smooth)  # a bad strength is refused before any work
    except ValueError as exc:
        raise DaganError(str(exc)) from None
    reference = parse_reference(reference)
    still = is_still_image(driving)
    source_files = source_paths(source)
    many = len(source_files) > 1 or (isinstance(source, str | Path) and Path(source).is_dir())
    if output is None:
        output = "result/" if many else "result.png" if still else "result.mp4"
    per_source = _outputs_per_source(source_files, output, ".png" if still else ".mp4") if many else []
    if many and (save_side_by_side is not None or find_best_frame):
        raise DaganError("--save-side-by-side and --find-best-frame take one source (--side-by-side works for several)")
    check_outputs(
        {
            "--output": output,
            **{f"--output ({path.name})": path for path in per_source},
            "--save-depth": save_depth,
            "--save-side-by-side": save_side_by_side,
        },
        {
            "--source": source_files,
            "--driving": driving,
            "--checkpoint": checkpoint,
            "--depth-weights": depth_weights,
            "--reference": reference if isinstance(reference, Path) else None,
        },
        folders=["--output"] if is_directory_output(output) else [],
    )
    if isinstance(reference, int):
        if best_frame is not None or find_best_frame:
            raise DaganError("--reference N and --best-frame / --find-best-frame name the same thing: give one")
        if still:
            raise DaganError("--reference N names a frame of a driving video; a still driving image has one")
        best_frame = reference
    if isinstance(reference, Path) and (best_frame is not None or find_best_frame):
        raise DaganError("--reference IMAGE and --best-frame / --find-best-frame both set the reference: give one")
    if is_directory_output(output) and not many:
        check_frame_folder(output, overwrite)
    render_depth = depth_renderer(depth_style)
    working_size = animator.size if animator else DataConfig.frame_shape[0]
    source_images = [read_image(path, working_size=working_size) for path in source_files]
    source_image = source_images[0]
    reference_image = read_image(reference, working_size) if isinstance(reference, Path) else None
    if still:
        if find_best_frame or best_frame is not None:
            raise DaganError("--best-frame and --find-best-frame choose a frame of a driving video, not of an image")
        animator = animator or Animator.from_checkpoint(checkpoint, depth_weights, device, inference)
        driving_image = read_image(driving, working_size)
        mains = per_source or [Path(output)]
        if many:
            check_writable_directory(output)
        for index, (image, main) in enumerate(zip(source_images, mains, strict=True)):
            outputs = {"main": main, "depth": save_depth if index == 0 else None, "side": save_side_by_side}
            report = _animate_still(
                image,
                driving_image,
                reference_image,
                {role: Path(path) for role, path in outputs.items() if path is not None},
                side_by_side_output,
                adapt_scale,
                render_depth,
                animator,
                started,
                overwrite,
            )
        return dataclasses.replace(report, output=Path(output), depth_output=Path(save_depth) if save_depth else None)
    info = probe_video(driving)
    if find_best_frame:
        from dagan.face import best_matching_frame

        frames = tqdm(iter_frames(info), total=info.frame_count, disable=quiet, file=sys.stderr, desc="best frame")
        best_frame = best_matching_frame(source_image, frames)
        if not quiet:
            print(f"best driving frame: {best_frame}", file=sys.stderr)
    if best_frame is not None and (best_frame < 0 or (info.frame_count and best_frame >= info.frame_count)):
        flag = "--reference" if reference is not None else "--best-frame"
        raise DaganError(f"{flag} {best_frame} is outside the driving video's {info.frame_count} frames")
    to_directory = is_directory_output(output) and not many
    output = Path(output)
    if not to_directory and not many:
        check_target(output, "--output")
    extra_outputs = {"depth": save_depth, "side": save_side_by_side}
    extra_paths = {role: Path(path) for role, path in extra_outputs.items() if path is not None}
    for role, path in extra_paths.items():
        check_target(path, "--save-depth" if role == "depth" else "--save-side-by-side")
    if animator is None:
        animator = Animator.from_checkpoint(checkpoint, depth_weights, device, inference)
    initial = reference_image
    if initial is None and best_frame is not None:
        initial = _frame_at(info, best_frame, "--reference" if reference is not None else "--best-frame")
    batch_size = default_batch_size(animator.device) if batch_size is None else batch_size

    with contextlib.ExitStack() as stack:
        # (role, source index, writer): one main output per source, the depth and panels once.
        writers: list[tuple[str, int, object]] = []
        source_views = [resize_frame(image, animator.size) for image in source_images]

        draws_depth = side_by_side_output or bool(extra_paths)

        def write(frames: list[AnimatedFrame]) -> None:
            # Once a frame, for every writer: the colour range is the video's, fixed by its first frame.
            depth = render_depth(frames[0].driving_depth) if draws_depth else None
            for role, index, writer in writers:
                if role == "depth":
                    writer.write(depth)
                elif role == "side" or side_by_side_output:
                    writer.write(side_by_side(source_views[index], frames[index], lambda _: depth))
                else:
                    writer.write(frames[index].prediction)

        # The stack unwinds last-in first-out: on failure the frames stop first, then the writer
        # thread, and only then are the writers' temporary files discarded (and a new folder removed).
        audio = info.path if info.has_audio else None
        if many:
            stack.enter_context(removed_if_failed_empty(output))
            check_writable_directory(output)
            for index, path in enumerate(per_source):
                writers.append(("main", index, stack.enter_context(Mp4Writer(path, info.fps, audio))))
        elif to_directory:
            writers.append(("main", 0, stack.enter_context(PngDirectoryWriter(output, overwrite))))
        else:
            writers.append(("main", 0, stack.enter_context(Mp4Writer(output, info.fps, audio))))
        for role, path in extra_paths.items():
            writers.append((role, 0, stack.enter_context(Mp4Writer(path, info.fps))))
        sink = BackgroundConsumer(write)
        stack.push(lambda kind, *_: sink.cancel() if kind is not None else None)
        motion = {"relative": relative, "adapt_scale": adapt_scale, "batch_size": batch_size}
        motion.update(initial_frame=initial, smooth=smooth, fps=float(info.fps))
        driving_frames = prefetch(iter_frames(info), 2 * batch_size)
        if many:  # the driving depth and keypoints are computed once for every source
            stream = animator.animate_many(source_images, driving_frames, **motion)
        else:
            stream = animator.animate(source_image, driving_frames, **motion)
        # Closed on failure too, so its worker threads stop at once.
        stream = stack.enter_context(contextlib.closing(stream))
        count = 0
        with tqdm(total=info.frame_count, unit="frame", disable=quiet, file=sys.stderr, desc="animate") as bar:
            for frame in stream:
                sink.put(frame if many else [frame])
                count += 1
                bar.update(1)
        sink.close()
    return AnimateReport(
        count, output, extra_paths.get("depth"), time.perf_counter() - started, extra_paths.get("side")
    )


def _animate_still(
    source_image: np.ndarray,
    driving_image: np.ndarray,
    reference_image: np.ndarray | None,
    outputs: dict[str, Path],
    side_by_side_output: bool,
    adapt_scale: bool,
    render_depth: Callable[[np.ndarray], np.ndarray],
    animator: Animator,
    started: float,
    overwrite: bool,
) -> AnimateReport:
    """One driving image, one output image: absolute motion, or relative to ``reference_image``."""
    flags = {"main": "--output", "depth": "--save-depth", "side": "--save-side-by-side"}
    for role, path in outputs.items():
        if not (role == "main" and is_directory_output(path)):
            check_target(path, flags[role], ".png")
    relative = reference_image is not None
    frame = next(
        iter(animator.animate(source_image, [driving_image], relative=relative, adapt_scale=adapt_scale,
                              initial_frame=reference_image))
    )  # fmt: skip
    depth = render_depth(frame.driving_depth)
    panels = side_by_side(resize_frame(source_image, animator.size), frame, lambda _: depth)
    pictures = {"main": panels if side_by_side_output else frame.prediction, "depth": depth, "side": panels}
    main = outputs["main"]
    if is_directory_output(main):
        with PngDirectoryWriter(main, overwrite) as writer:
            writer.write(pictures["main"])
    for role, path in outputs.items():
        if not (role == "main" and is_directory_output(path)):
            write_png(path, pictures[role])
    return AnimateReport(1, main, outputs.get("depth"), time.perf_counter() - started, outputs.get("side"))
