"""``dagan depth``: face depth of images, videos or frame folders, as pictures, raw arrays and point clouds."""

from __future__ import annotations

import contextlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dagan.config import check_depth_size
from dagan.errors import DaganError, first_line
from dagan.geometry import disp_to_depth
from dagan.io.atomic import atomic_output, check_outputs, check_writable_directory, removed_if_failed_empty
from dagan.io.colormap import colorize_disparity
from dagan.io.image import IMAGE_SUFFIXES, list_frame_files, read_image, resize_frame, write_png
from dagan.io.video import Mp4Writer, VideoInfo, iter_frames, probe_video
from dagan.options import DepthOptions
from dagan.pipelines.distributed import select_device
from dagan.pipelines.networks import load_trained_depth

#: Focal length (in units of the image width) assumed when the weights carry no learned intrinsics.
DEFAULT_FOCAL = 1.0


@dataclass
class DepthReport:
    """What ``depth_files`` wrote."""

    frames: int
    outputs: list[Path]


def pixel_intrinsics(weights: Path, size: int, focal: float | None) -> np.ndarray:
    """Intrinsics for back-projection: ``--focal`` if given, else the learned ones, else a default."""
    if focal is not None and not (math.isfinite(focal) and focal > 0):
        raise DaganError(f"--focal must be a finite number above 0, got {focal}")
    if focal is None:
        learned = weights / "intrinsics.json" if weights.is_dir() else None
        if learned is not None and learned.is_file():
            k = _learned_intrinsics(learned, size)
            if k is not None:
                return k
        focal = DEFAULT_FOCAL
    return np.array([[focal * size, 0, size / 2], [0, focal * size, size / 2], [0, 0, 1]], dtype=np.float64)


def _learned_intrinsics(path: Path, size: int) -> np.ndarray | None:
    """The learned camera of ``intrinsics.json`` scaled to ``size`` pixels (None when it records none)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not data.get("intrinsics"):
            return None
        k = np.array(data["intrinsics"], dtype=np.float64)
        recorded = float(data.get("size", size))
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise DaganError(f"{path} is not a valid intrinsics file ({first_line(exc, 120)})") from exc
    if k.shape != (3, 3) or not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise DaganError(f"{path}: intrinsics must be a 3x3 camera matrix with focal lengths above 0")
    if not (math.isfinite(recorded) and recorded > 0):
        raise DaganError(f"{path}: size must be a number of pixels above 0, got {data.get('size')!r}")
    k[:2] *= size / recorded
    return k


def point_cloud(depth: np.ndarray, image: np.ndarray, intrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Back-project every pixel: (N, 3) camera-space points and their (N, 3) uint8 colours."""
    h, w = depth.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    pixels = np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)])
    points = (np.linalg.inv(intrinsics) @ pixels) * depth.ravel()
    colours = (np.clip(image.reshape(-1, 3), 0, 1) * 255 + 0.5).astype(np.uint8)
    return points.T.astype(np.float32), colours


def write_ply(path: Path, points: np.ndarray, colours: np.ndarray) -> None:
    """Binary little-endian PLY with x, y, z and red, green, blue, written atomically."""
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(points)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    record = np.dtype([("xyz", "<f4", 3), ("rgb", "u1", 3)])
    data = np.empty(len(points), dtype=record)
    # Flip y and z so viewers show the face upright and towards the viewer.
    data["xyz"] = points * np.array([1, -1, -1], dtype=np.float32)
    data["rgb"] = colours
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(header.encode("ascii"))
            handle.write(data.tobytes())


def _inputs(path: Path) -> tuple[str, list[Path] | None]:
    if not path.exists():
        raise DaganError(f"input {path} does not exist")
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        return "image", [path]
    if path.is_dir():
        return "folder", list_frame_files(path)
    return "video", None


@torch.no_grad()
def depth_files(
    weights: str | Path,
    source: str | Path,
    out: str | Path,
    *,
    raw: str = DepthOptions.raw,
    ply: bool = DepthOptions.ply,
    focal: float | None = DepthOptions.focal,
    size: int = DepthOptions.size,
    batch_size: int = DepthOptions.batch_size,
    device: str = DepthOptions.device,
    quiet: bool = DepthOptions.quiet,
) -> DepthReport:
    """Disparity pictures (PNG per image, or an MP4 for a video), raw depth, and optional point clouds.

    ``out`` is a folder. Per frame ``NAME`` it gets ``NAME_disp.png`` (colour-mapped disparity),
    ``NAME_depth.npy`` (float32 depth) or ``NAME_depth.png`` (16-bit, millimetres of the model's
    depth units), and with ``ply`` a coloured ``NAME.ply``. A video also gets ``disparity.mp4``.
    """
    weights, source, out = Path(weights), Path(source), Path(out)
    if raw not in ("npy", "png16", "none"):
        raise DaganError(f"--raw must be npy, png16 or none, not {raw}")
    check_depth_size(size)
    check_outputs({"--out": out}, {"--input": source, "--weights": weights}, folders=["--out"])
    kind, files = _inputs(source)
    if kind != "video" and not files:
        raise DaganError(f"no images in {source}")
    # Everything that can be refused is checked before the first file is written.
    intrinsics = pixel_intrinsics(weights, size, focal)
    info = probe_video(source, "--input") if kind == "video" else None
    network = load_trained_depth(weights).to(select_device(device))
    with removed_if_failed_empty(out):
        check_writable_directory(out)
        return _write_depth(network, kind, files, info, out, raw, ply, intrinsics, size, batch_size, quiet)


def _write_depth(
    network: torch.nn.Module,
    kind: str,
    files: list[Path] | None,
    info: VideoInfo | None,
    out: Path,
    raw: str,
    ply: bool,
    intrinsics: np.ndarray,
    size: int,
    batch_size: int,
    quiet: bool,
) -> DepthReport:
    param = next(network.parameters())
    stack = contextlib.ExitStack()
    if info is not None:
        frames = iter_frames(info)
        names = (f"{i:06d}" for i in range(10**9))
        total = info.frame_count
        video = stack.enter_context(Mp4Writer(out / "disparity.mp4", info.fps))
    else:
        frames = (read_image(f, working_size=size) for f in files)
        names = (f.stem for f in files)
        total, video = len(files), None
    written: list[Path] = []

    def flush(batch: list[np.ndarray], batch_names: list[str]) -> None:
        tensor = torch.from_numpy(np.stack(batch).transpose(0, 3, 1, 2)).to(param.device, param.dtype)
        disparity = network(tensor)
        depth = disp_to_depth(disparity)[:, 0].float().cpu().numpy()
        disparity = disparity[:, 0].float().cpu().numpy()
        for image, name, disp, dep in zip(batch, batch_names, disparity, depth, strict=True):
            picture = colorize_disparity(disp)
            if video is not None:
                video.write(picture)
            else:
                write_png(out / f"{name}_disp.png", picture)
                written.append(out / f"{name}_disp.png")
            if raw == "npy":
                with atomic_output(out / f"{name}_depth.npy") as tmp:
                    np.save(tmp, dep.astype(np.float32))
            elif raw == "png16":
                write_png(out / f"{name}_depth.png", np.clip(dep * 1000, 0, 65535).astype(np.uint16))
            if ply:
                points, colours = point_cloud(dep, image, intrinsics)
                write_ply(out / f"{name}.ply", points, colours)
                written.append(out / f"{name}.ply")

    count = 0
    with stack:
        batch: list[np.ndarray] = []
        batch_names: list[str] = []
        with tqdm(total=total, unit="frame", disable=quiet, file=sys.stderr, desc="depth") as bar:
            for frame, name in zip(frames, names, strict=False):
                batch.append(resize_frame(frame, size))
                batch_names.append(name)
                if len(batch) == batch_size:
                    flush(batch, batch_names)
                    bar.update(len(batch))
                    count += len(batch)
                    batch, batch_names = [], []
            if batch:
                flush(batch, batch_names)
                bar.update(len(batch))
                count += len(batch)
    if video is not None:
        written.append(out / "disparity.mp4")
    return DepthReport(count, written)
