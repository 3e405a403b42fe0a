"""Image reading, resizing and writing."""

from __future__ import annotations

import math
import warnings
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


def to_float_rgb(array: np.ndarray) -> np.ndarray:
    """Any gray/RGB/RGBA array (uint8, uint16 or float) as a frame: (H, W, 3) float32 RGB in [0, 1]."""
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
        return array.astype(np.float32) / np.float32(255.0)
    if array.dtype == np.uint16:
        return array.astype(np.float32) / np.float32(65535.0)
    if array.dtype in (np.int32, np.int64):  # PIL's 16-bit grayscale mode "I"
        return np.clip(array, 0, 65535).astype(np.float32) / np.float32(65535.0)
    if array.dtype == bool:
        return array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError("it holds NaN or infinite values")
    return np.clip(array.astype(np.float32), 0.0, 1.0)


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


#: A source this many times the working size (or more, on its short side) is reduced while decoding ...
REDUCE_ABOVE = 16
#: ... by an integer factor, to no less than this many times it (see ``read_image``).
REDUCE_TO = 8


def read_image(path: str | Path, working_size: int | None = None) -> np.ndarray:
    """Read an image file as a frame (float32 RGB in [0, 1]), honouring EXIF orientation.

    The pixel limit is checked from the header, before decoding. Given ``working_size`` (the square
    size the caller resizes to), an image ``REDUCE_ABOVE`` times the working size is decoded reduced by an
    integer factor (JPEG: in the DCT, others: box means in uint8) and returned already resized to
    ``working_size``, with the anti-aliasing that makes it match ``resize_frame`` of the full image
    (on a 6144x8000 photo of fine fur: a mean difference of 0.13/255, at most 2.4/255, as PNG; 0.18
    and 4/255 as JPEG; ``benchmarks/safety.py``): no full-size float array is ever made.
    """
    path = Path(path)
    if not path.is_file():
        raise DaganError(f"image {path} does not exist")
    try:
        with warnings.catch_warnings():
            # PIL warns of large images on its own; the pixel limit below is dagan's answer to them.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            check_pixels(*image.size, path)
            full = image.size
            factor = _reduce_factor(full, working_size)
            if factor > 1 and image.format == "JPEG":
                image.draft("RGB", (full[0] // factor, full[1] // factor))
            swapped = image.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
            image = _decodable_mode(ImageOps.exif_transpose(image))
            if factor > 1:
                reduce_by = round(min(image.size) / (REDUCE_TO * working_size)) if image.size != full else factor
                if reduce_by > 1 and image.mode in ("L", "RGB", "RGBA"):
                    image = image.reduce(reduce_by)
            array = np.asarray(image)
    except DaganError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DaganError(f"{path} is not a readable image ({first_line(exc, 160)})") from exc
    try:
        rgb = to_float_rgb(array)
    except ValueError as exc:
        raise DaganError(f"{path}: {exc}") from exc
    if factor > 1:
        return _resize_reduced(rgb, full[::-1] if not swapped else full, working_size)
    return rgb


_EXIF_ORIENTATION = 0x0112


def _decodable_mode(image: Image.Image) -> Image.Image:
    """A PIL image in a mode ``to_float_rgb`` reads: palettes and colour spaces become RGB(A); 16 bits stay."""
    if image.mode == "P":
        return image.convert("RGBA")
    if image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB")
    return image


def as_frame(image: str | Path | np.ndarray | Image.Image, working_size: int | None = None) -> np.ndarray:
    """A frame (float32 RGB in [0, 1]) from an image file, an array (uint8 pixels or a frame) or a PIL image."""
    if isinstance(image, str | Path):
        return read_image(image, working_size)
    if isinstance(image, Image.Image):
        check_pixels(*image.size, "the PIL image")
        # Not convert("RGB"): that clips 16-bit images to white; read_image keeps their 16 bits, and so does this.
        return to_float_rgb(np.asarray(_decodable_mode(ImageOps.exif_transpose(image))))
    if isinstance(image, np.ndarray):
        if not (image.dtype.kind == "u" and image.dtype.itemsize in (1, 2)) and image.dtype.kind != "f":
            raise DaganError(f"an image array holds uint8 or uint16 pixels or [0, 1] floats, not {image.dtype}")
        try:
            return to_float_rgb(check_frame(image) if image.dtype.kind == "f" else image)
        except (TypeError, ValueError) as exc:
            raise DaganError(f"cannot use the image array: {exc}") from None
    raise DaganError(f"an image must be a path, a numpy array or a PIL image, not {type(image).__name__}")


def _reduce_factor(size: tuple[int, int], working_size: int | None) -> int:
    if working_size is None or min(size) < REDUCE_ABOVE * working_size:
        return 1
    return min(size) // (REDUCE_TO * working_size)


def _resize_reduced(image: np.ndarray, full: tuple[int, int], size: int) -> np.ndarray:
    """``resize_frame`` of the full (height, width) image, computed from a copy reduced by an integer factor.

    skimage blurs with sigma (scale - 1) / 2 full pixels and samples bilinearly at pixel centres.
    The reduction was a box of the factor's width: only the rest of the blur is applied, and the
    sample positions are mapped through the factor itself, since the reduced size is rounded.
    """
    from scipy import ndimage

    sigmas, positions = [], []
    for length, reduced in zip(full, image.shape[:2], strict=True):
        factor = max(1, round(length / reduced))
        blur = max(0.0, (length / size - 1) / 2)
        sigmas.append(math.sqrt(max(blur**2 - (factor**2 - 1) / 12, 0.0)) / factor)
        positions.append((np.arange(size) + 0.5) * (length / size) / factor - 0.5)
    blurred = ndimage.gaussian_filter(image, (*sigmas, 0), mode="mirror")
    rows, cols = np.meshgrid(*positions, indexing="ij")
    channels = [ndimage.map_coordinates(blurred[..., c], [rows, cols], order=1, mode="mirror") for c in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def resize_frame(image: np.ndarray, size: int = 256) -> np.ndarray:
    """Resize a frame to ``size`` x ``size`` as ``skimage.transform.resize`` does (anti-aliased).

    An image already at that size is used as it is; the arithmetic is float32, never float64.
    uint8 pixel values are taken as they are, as the writers take them.
    """
    image = to_float_rgb(image) if image.dtype == np.uint8 else check_frame(image)
    if image.shape[:2] != (size, size):
        from skimage.transform import resize

        image = resize(image, (size, size))
    return np.ascontiguousarray(image[..., :3], dtype=np.float32)


def check_frame(frame: np.ndarray) -> np.ndarray:
    """``frame`` as float32, after making sure it keeps the frame contract (see ``dagan.io``).

    A float array above 1 is a 0-255 frame passed where [0, 1] belongs: refused, not rescaled,
    because a silent second division by 255 is the bug this contract exists to stop.
    """
    if frame.dtype.kind != "f":
        raise TypeError(f"frames are float RGB in [0, 1] (dagan.io's frame contract), got {frame.dtype}")
    if frame.size and float(frame.max()) > 1.0 + 1e-3:
        raise ValueError(f"a frame holds values up to {float(frame.max()):.3g}: frames are RGB in [0, 1]")
    return frame if frame.dtype == np.float32 else frame.astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] to uint8, rounding to nearest."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write a frame (or uint8 / uint16 pixel values as they are) as PNG, atomically."""
    if image.dtype != np.uint8 and image.dtype != np.uint16:
        image = to_uint8(check_frame(image))
    with atomic_output(path, suffix=".png") as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
