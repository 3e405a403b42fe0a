"""Image reading, resizing and writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dagan.errors import DaganError, first_line
from dagan.io.atomic import atomic_output

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def list_frame_files(directory: Path) -> list[Path]:
    """Image files of a frame folder in name order, without hidden files (such as macOS ``._*``)."""
    return sorted(
        p for p in Path(directory).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def to_float_rgb(array: np.ndarray) -> np.ndarray:
    """Any gray/RGB/RGBA array (uint8, uint16 or float) as float64 RGB in [0, 1]."""
    if array.ndim == 3 and array.shape[2] in (2, 4):  # drop alpha
        array = array[..., :-1]
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"unsupported image shape {array.shape}")
    if array.dtype.kind == "u" and array.dtype.itemsize == 2:  # any byte order
        array = array.astype(np.uint16)
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float64) / 65535.0
    if array.dtype in (np.int32, np.int64):  # PIL's 16-bit grayscale mode "I"
        return np.clip(array, 0, 65535).astype(np.float64) / 65535.0
    if array.dtype == bool:
        return array.astype(np.float64)
    return np.clip(array.astype(np.float64), 0.0, 1.0)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as float64 RGB in [0, 1], honouring EXIF orientation."""
    path = Path(path)
    if not path.is_file():
        raise DaganError(f"image {path} does not exist")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode == "P":
                image = image.convert("RGBA")
            elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert("RGB")
            array = np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DaganError(f"{path} is not a readable image ({first_line(exc, 160)})") from exc
    try:
        return to_float_rgb(array)
    except ValueError as exc:
        raise DaganError(f"{path}: {exc}") from exc


def resize_frame(image: np.ndarray, size: int = 256) -> np.ndarray:
    """Resize to ``size`` x ``size`` as ``skimage.transform.resize`` does (anti-aliased); float32 out.

    An image already at that size is used as it is.
    """
    if image.dtype == np.uint8:
        image = image.astype(np.float64) / 255.0
    if image.shape[:2] != (size, size):
        from skimage.transform import resize

        image = resize(image, (size, size))
    return np.ascontiguousarray(image[..., :3], dtype=np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] to uint8, rounding to nearest."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write a uint8 (or [0, 1] float) image as PNG, atomically."""
    if image.dtype != np.uint8 and image.dtype != np.uint16:
        image = to_uint8(image)
    with atomic_output(path, suffix=".png") as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
