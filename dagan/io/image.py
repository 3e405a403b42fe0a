"""Image reading, resizing and writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dagan.config import DEFAULT_MAX_PIXELS
from dagan.errors import DaganError, first_line
from dagan.io.atomic import atomic_output

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def list_frame_files(directory: Path) -> list[Path]:
    """Image files of a frame folder in name order, without hidden files (such as macOS ``._*``)."""
    return sorted(
        p for p in Path(directory).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def to_float_rgb(array: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """Any gray/RGB/RGBA array (uint8, uint16 or float) as RGB in [0, 1], float64 or ``dtype``."""
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
        return array.astype(dtype) / dtype(255.0)
    if array.dtype == np.uint16:
        return array.astype(dtype) / dtype(65535.0)
    if array.dtype in (np.int32, np.int64):  # PIL's 16-bit grayscale mode "I"
        return np.clip(array, 0, 65535).astype(dtype) / dtype(65535.0)
    if array.dtype == bool:
        return array.astype(dtype)
    if not np.isfinite(array).all():
        raise ValueError("it holds NaN or infinite values")
    return np.clip(array.astype(dtype), 0.0, 1.0)


_max_pixels = DEFAULT_MAX_PIXELS


def set_max_pixels(limit: int) -> None:
    """Refuse images and video frames above ``limit`` pixels from now on (``--max-pixels``)."""
    global _max_pixels
    if limit < 1:
        raise DaganError(f"--max-pixels must be at least 1, got {limit}")
    _max_pixels = int(limit)
    # PIL's own guard refuses at twice its limit; ours comes first, so it must not be the lower one.
    Image.MAX_IMAGE_PIXELS = max(_max_pixels, DEFAULT_MAX_PIXELS)


def check_pixels(width: int, height: int, path: str | Path) -> None:
    """Refuse a frame size above the pixel limit, before anything of that size is allocated."""
    if width < 1 or height < 1:
        raise DaganError(f"{path} has no pixels ({width}x{height})")
    if width * height > _max_pixels:
        raise DaganError(
            f"{path} is {width}x{height} ({width * height / 1e6:.1f} Mpx), above the limit of "
            f"{_max_pixels / 1e6:g} Mpx: pass --max-pixels {width * height} if it is meant to be read"
        )


#: A source this many times the working size (or more) is first reduced while decoding (see ``read_image``).
REDUCE_ABOVE = 8
#: ... to no less than this many times the working size, so the final anti-aliased resize barely differs.
REDUCE_TO = 4


def read_image(path: str | Path, working_size: int | None = None) -> np.ndarray:
    """Read an image file as RGB in [0, 1], honouring EXIF orientation.

    The result is float64; with ``working_size`` (the size it will be resized to) it is float32, the
    arithmetic the resize runs in. The pixel limit is checked from the header before decoding. An image at
    least ``REDUCE_ABOVE`` times larger on its short side is decoded reduced by an integer factor
    (JPEG: in the DCT, others: by box averaging in uint8) to no less than ``REDUCE_TO`` times it,
    so a 4000x3000 photo never exists as a full-size float array.
    """
    path = Path(path)
    if not path.is_file():
        raise DaganError(f"image {path} does not exist")
    try:
        with Image.open(path) as image:
            check_pixels(*image.size, path)
            factor = _reduce_factor(image.size, working_size)
            if factor > 1 and image.format == "JPEG":
                image.draft("RGB", (image.size[0] // factor, image.size[1] // factor))
                factor = _reduce_factor(image.size, working_size)
            image = ImageOps.exif_transpose(image)
            if image.mode == "P":
                image = image.convert("RGBA")
            elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert("RGB")
            if factor > 1 and image.mode in ("L", "RGB", "RGBA"):
                image = image.reduce(factor)
            array = np.asarray(image)
    except DaganError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DaganError(f"{path} is not a readable image ({first_line(exc, 160)})") from exc
    try:
        return to_float_rgb(array, np.float64 if working_size is None else np.float32)
    except ValueError as exc:
        raise DaganError(f"{path}: {exc}") from exc


def _reduce_factor(size: tuple[int, int], working_size: int | None) -> int:
    if working_size is None or min(size) < REDUCE_ABOVE * working_size:
        return 1
    return min(size) // (REDUCE_TO * working_size)


def resize_frame(image: np.ndarray, size: int = 256) -> np.ndarray:
    """Resize to ``size`` x ``size`` as ``skimage.transform.resize`` does (anti-aliased); float32 out.

    An image already at that size is used as it is; the arithmetic is float32, never float64.
    """
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / np.float32(255.0)
    elif image.dtype != np.float32:
        image = image.astype(np.float32)
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
