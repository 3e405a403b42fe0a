"""Animate a real photo with a real video: ``dagan animate --crop [--paste-back] [--face N|all]``.

The photo's faces and the driving video are cut as ``dagan crop`` cuts them, so the networks see
the VoxCeleb framing they were trained on. The driving video's clips (one face at a time, in
order) are each animated relative to their own first frame; frames that no clip covers repeat
the last output frame, so the output keeps one frame per driving frame and the driving audio in
sync. ``--paste-back`` blends every animated face into the photo at its full resolution through
a soft face-and-hair mask, fixed per face so that the seam cannot flicker.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from dagan.config import CropConfig, InferenceConfig
from dagan.errors import DaganError
from dagan.io.atomic import check_outputs, check_writable_directory, removed_if_failed_empty
from dagan.io.image import read_image, to_float_rgb, to_uint8, write_png
from dagan.io.video import Mp4Writer, probe_video
from dagan.motion import KeypointSmoother
from dagan.options import AnimateOptions
from dagan.pipelines.animate import (
    AnimateReport,
    Animator,
    check_target,
    default_batch_size,
    is_directory_output,
    is_still_image,
)
from dagan.pipelines.crop import (
    PREVIEW_TILE,
    PREVIEW_TILES,
    Clip,
    FaceFinder,
    clips_of,
    contact_sheet,
    crop_square,
    draw_boxes,
    find_tracks,
    framing_box,
    iter_crops,
    photo_faces,
    usable_faces,
)


@dataclass
class PhotoFace:
    """One face of the source photo: its index (left to right), crop box and paste-back mask."""

    index: int
    box: tuple[int, int, int, int]
    #: (side, side) float32 in [0, 1] in the crop box's pixels; None when nothing is pasted back.
    mask: np.ndarray | None


def parse_face(text: str | int | None) -> int | str | None:
    """``--face``: a face index (digits) or ``all``; None means the largest face."""
    if text is None or isinstance(text, int) or text == "all":
        return text
    if str(text).isascii() and str(text).isdigit():
        return int(text)
    raise DaganError(f"--face takes a face index (0 is the leftmost) or 'all', not {text!r}")


def photo_crops(
    photo: np.ndarray, name: str, face: int | str | None, feather: float | None, config: CropConfig
) -> list[PhotoFace]:
    """The chosen faces of a photo (``--face``), each with its crop box and (given a ``feather``) its mask."""
    from dagan.face import FaceAnalyzer, head_mask

    found = photo_faces(photo, config)
    usable = dict(usable_faces(found, config, name))
    if not found:
        raise DaganError(f"no face found in the source photo {name}")
    if not usable:
        raise DaganError(f"every face of the source photo {name} is under {config.min_face} pixels wide")
    if face is None:
        chosen = [max(usable, key=lambda i: usable[i][2] - usable[i][0])]
    elif face == "all":
        chosen = sorted(usable)
    elif face >= len(found):
        raise DaganError(f"--face {face}: the source photo {name} has {len(found)} face(s), numbered from 0")
    elif face not in usable:
        raise DaganError(f"--face {face} of {name} is under {config.min_face} pixels wide, too small to animate")
    else:
        chosen = [face]
    analyzer = FaceAnalyzer() if feather is not None else None
    pixels = to_uint8(photo)
    faces = []
    for index in chosen:
        box = framing_box(np.array([usable[index]]), config)
        mask = None
        if analyzer is not None:
            landmarks = analyzer.landmarks(pixels, usable[index]) - np.array(box[:2], dtype=np.float64)
            mask = head_mask(landmarks, box[2] - box[0], feather)
        faces.append(PhotoFace(index, box, mask))
    return faces


def driving_clips(clips: list[Clip]) -> list[Clip]:
    """The clips to animate from, one face at a time: the longest first, then the longest that fit between."""
    chosen: list[Clip] = []
    for clip in sorted(clips, key=lambda c: (-(c.end - c.start), c.start)):
        if all(clip.end <= other.start or other.end <= clip.start for other in chosen):
            chosen.append(clip)
    return sorted(chosen, key=lambda c: c.start)


class PasteBack:
    """Blends animated face crops into a photo at its full resolution, each through its fixed mask."""

    def __init__(self, photo: np.ndarray, faces: list[PhotoFace]):
        if any(face.mask is None for face in faces):
            raise ValueError("PasteBack needs every face's mask")
        self.photo = to_uint8(photo)
        self.faces = faces
        height, width = self.photo.shape[:2]
        self._regions = []
        for face in faces:
            left, top, right, bottom = face.box
            inside = (slice(max(top, 0), min(bottom, height)), slice(max(left, 0), min(right, width)))
            in_crop = (
                slice(inside[0].start - top, inside[0].stop - top),
                slice(inside[1].start - left, inside[1].stop - left),
            )
            self._regions.append((inside, in_crop, face.mask[in_crop][..., None]))

    def compose(self, predictions: list[np.ndarray]) -> np.ndarray:
        """The photo (uint8) with each face replaced by its prediction (float frames at the crop size)."""
        out = self.photo.copy()
        for face, prediction, (inside, in_crop, mask) in zip(self.faces, predictions, self._regions, strict=True):
            side = face.box[2] - face.box[0]
            # Enlarged in uint8: pixels are what is written, and PIL's bicubic is several times faster there.
            enlarged = Image.fromarray(to_uint8(prediction)).resize((side, side), Image.BICUBIC)
            face_pixels = to_float_rgb(np.asarray(enlarged))[in_crop]
            region = out[inside].astype(np.float32) / 255.0
            blended = region + mask * (face_pixels - region)
            out[inside] = to_uint8(blended)
        return out


def animate_footage(
    source: str | Path,
    driving: str | Path,
    checkpoint: str | Path,
    depth_weights: str | Path | None = None,
    output: str | Path | None = None,
    *,
    paste_back: bool = AnimateOptions.paste_back,
    face: int | str | None = AnimateOptions.face,
    mask_feather: float | None = AnimateOptions.mask_feather,
    crop: CropConfig | None = None,
    relative: bool = AnimateOptions.relative,
    adapt_scale: bool = AnimateOptions.adapt_scale,
    device: str = AnimateOptions.device,
    batch_size: int | None = AnimateOptions.batch_size,
    smooth: float = AnimateOptions.smooth,
    quiet: bool = AnimateOptions.quiet,
    animator: Animator | None = None,
    inference: InferenceConfig | None = None,
    preview: str | Path | None = None,
) -> AnimateReport:
    """The ``dagan animate --crop`` job: a real photo and a real driving video in, an MP4 out.

    Without ``paste_back`` the output is the animated face crop, with it the photo at full size.
    A folder ``output`` (ending in /; needed for several faces without ``paste_back``) gets
    ``<source stem>_<face>.mp4`` per face, or ``<source stem>.mp4`` when pasted back. A
    ``preview`` PNG shows the photo's chosen faces boxed, then each driving clip's first crop.
    """
    started = time.perf_counter()
    crop = crop or CropConfig()
    feather = crop.mask_feather if mask_feather is None else mask_feather
    if not 0 <= feather <= 1:
        raise DaganError(f"--mask-feather must be between 0 and 1 (a fraction of the face size), got {feather}")
    try:
        KeypointSmoother(smooth)
    except ValueError as exc:
        raise DaganError(str(exc)) from None
    face = parse_face(face)
    source, driving = Path(source), Path(driving)
    if source.is_dir():
        raise DaganError("--crop animates one source photo: give an image, not a folder")
    to_folder = output is not None and is_directory_output(output)  # before Path() drops a trailing slash
    output = Path(output) if output is not None else None
    inputs = {"--source": source, "--driving": driving, "--checkpoint": checkpoint, "--depth-weights": depth_weights}
    check_outputs({"--output": output}, inputs, folders=["--output"] if to_folder else [])
    if is_still_image(driving):
        raise DaganError("--crop takes a driving video or frame folder, not a still image")
    photo = read_image(source)
    info = probe_video(driving)
    faces = photo_crops(photo, source.name, face, feather if paste_back else None, crop)
    several = len(faces) > 1 and not paste_back
    if output is None:
        output, to_folder = Path("result/" if several else "result.mp4"), several
    if several and not to_folder:
        raise DaganError(f"--output {output} must be a folder (ending in /): each of the {len(faces)} faces is a video")
    if not to_folder:
        outputs = [output]
    elif paste_back:
        outputs = [output / f"{source.stem}.mp4"]
    else:
        outputs = [output / f"{source.stem}_{f.index}.mp4" for f in faces]
    if not to_folder:
        check_target(output, "--output")
    check_outputs({f"--output ({p.name})": p for p in outputs}, inputs)

    tracks, times = find_tracks(info, crop, FaceFinder(), quiet)
    clips, _ = clips_of(tracks, times, driving.stem, crop, "", driving.name)
    clips = driving_clips(clips)
    if not clips:
        raise DaganError(f"no face found in the driving video {driving} (none followed for {crop.min_frames} frames)")
    animator = animator or Animator.from_checkpoint(checkpoint, depth_weights, device, inference)
    batch_size = default_batch_size(animator.device) if batch_size is None else batch_size
    motion = {"relative": relative, "adapt_scale": adapt_scale, "batch_size": batch_size}
    motion.update(smooth=smooth, fps=float(info.fps))
    sources = [crop_square(photo, f.box, animator.size) for f in faces]

    clip_starts: list[np.ndarray] = []

    def predictions() -> Iterator[list[np.ndarray]]:
        """Per driving frame, one prediction per face; the last one again where no clip is."""
        latest = sources
        frames = iter_crops(info, clips, animator.size)
        for frame, clip, first in frames:
            if clip is None:
                yield latest
                continue
            if preview is not None and len(clip_starts) < PREVIEW_TILES:
                clip_starts.append(to_uint8(first))
            rest = (crop for _, _, crop in itertools.islice(frames, clip.end - frame - 1))
            with contextlib.closing(animator.animate_many(sources, itertools.chain([first], rest), **motion)) as run:
                for animated in run:
                    latest = [item.prediction for item in animated]
                    yield latest

    composer = PasteBack(photo, faces) if paste_back else None
    audio = info.path if info.has_audio else None
    count = 0
    with contextlib.ExitStack() as stack:
        if to_folder:
            stack.enter_context(removed_if_failed_empty(output))
            check_writable_directory(output)
        writers = [stack.enter_context(Mp4Writer(path, info.fps, audio)) for path in outputs]
        bar = tqdm(total=info.frame_count, unit="frame", disable=quiet, file=sys.stderr, desc="animate")
        with bar, contextlib.closing(predictions()) as stream:
            for animated in stream:
                if composer is not None:
                    writers[0].write(composer.compose(animated))
                else:
                    for writer, prediction in zip(writers, animated, strict=True):
                        writer.write(prediction)
                count += 1
                bar.update(1)
    if preview is not None:
        write_png(preview, _crop_preview(photo, faces, clip_starts))
    return AnimateReport(count, output, None, time.perf_counter() - started)


def _crop_preview(photo: np.ndarray, faces: list[PhotoFace], clip_starts: list[np.ndarray]) -> np.ndarray:
    """The photo with its animated faces boxed, then the first crop of each driving clip."""
    boxed = draw_boxes(to_uint8(photo), [(face.box, f"face {face.index}") for face in faces], PREVIEW_TILE)
    crops = [Image.fromarray(c).resize((PREVIEW_TILE, PREVIEW_TILE), Image.BILINEAR) for c in clip_starts]
    return np.asarray(contact_sheet([boxed, *crops]))
