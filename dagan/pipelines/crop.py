"""Real footage to talking-head crops: find faces, follow them, frame them as VoxCeleb does (``dagan crop``).

A video is read twice, both times streamed and decoded on a thread of its own ahead of the work.
The first pass shrinks each frame (``CropConfig.detect_size``), looks for scene cuts on a thumbnail
of it, detects faces every ``detect_every`` frames and at cuts, and follows each face by the IoU of
its box with the first box of its clip. The second pass cuts every clip's one fixed square box out
of the full frames and encodes it, with the audio of its span.

A clip ends at a scene cut, when its face is lost, or when the face leaves its first box (IoU under
``iou``); the same face then goes on in a new clip. This is the convention of first-order-model's
VoxCeleb preprocessing, which the published checkpoints were trained on: the box never moves
within a clip, so head motion stays in the picture.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import math
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from dagan.config import CropConfig
from dagan.errors import DaganError, warn
from dagan.io.atomic import atomic_output, check_outputs, check_writable_directory, removed_if_failed_empty
from dagan.io.image import IMAGE_SUFFIXES, read_image, resize_frame, to_float_rgb, to_uint8, write_png
from dagan.io.streaming import prefetch
from dagan.io.video import (
    VIDEO_SUFFIXES,
    Mp4Writer,
    PngDirectoryWriter,
    VideoInfo,
    iter_pixels,
    iter_timed_pixels,
    list_media_files,
    probe_video,
)

TRACKS_HEADER = ("file", "face", "start", "end", "x0", "y0", "x1", "y1")
#: Side of the thumbnail that scene cuts are measured on.
THUMBNAIL = 64
#: A face that leaves its clip's box goes on as the same face when its box overlaps its last one this much.
SAME_FACE_IOU = 0.3
#: The contact sheet: tiles of this width, this many per row, at most this many.
PREVIEW_TILE, PREVIEW_COLUMNS, PREVIEW_TILES = 320, 4, 48

Box = tuple[float, float, float, float]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes (left, top, right, bottom)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def framing_box(face_boxes: np.ndarray, config: CropConfig | None = None) -> tuple[int, int, int, int]:
    """The square crop (left, top, right, bottom; integers, may pass the frame's edges) for a clip's face boxes.

    The median face is framed as in the VoxCeleb crops (``CropConfig.face_fraction`` and offsets),
    the square then grows about the same centre until it holds every box of the clip, and
    ``increase`` adds its margin on each side.
    """
    config = config or CropConfig()
    boxes = np.asarray(face_boxes, dtype=np.float64).reshape(-1, 4)
    sides = (boxes[:, 2] - boxes[:, 0] + boxes[:, 3] - boxes[:, 1]) / 2
    face = float(np.median(sides))
    centre_x = float(np.median((boxes[:, 0] + boxes[:, 2]) / 2)) - config.face_offset_x * face
    centre_y = float(np.median((boxes[:, 1] + boxes[:, 3]) / 2)) - config.face_offset_y * face
    half = face / config.face_fraction / 2
    half = max(
        half,
        centre_x - boxes[:, 0].min(),
        boxes[:, 2].max() - centre_x,
        centre_y - boxes[:, 1].min(),
        boxes[:, 3].max() - centre_y,
    )
    side = max(2, round(2 * half * (1 + 2 * config.increase)))
    left, top = round(centre_x - side / 2), round(centre_y - side / 2)
    return left, top, left + side, top + side


def cut_square(image: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """The pixels of ``box`` (may pass the image's edges), the outside filled by replicating the edge pixels."""
    left, top, right, bottom = (int(v) for v in box)
    height, width = image.shape[:2]
    inside = image[max(top, 0) : min(bottom, height), max(left, 0) : min(right, width)]
    if inside.size == 0:
        raise DaganError(f"crop box {tuple(box)} lies outside the {width}x{height} frame")
    pads = ((max(-top, 0), max(bottom - height, 0)), (max(-left, 0), max(right - width, 0)), (0, 0))
    return np.pad(inside, pads[: image.ndim], mode="edge") if any(sum(p) for p in pads) else inside


def crop_pixels(pixels: np.ndarray, box: Sequence[int], size: int) -> np.ndarray:
    """``box`` of uint8 pixels resized to ``size`` square, still uint8 (what the clip writers take as it is)."""
    region = cut_square(pixels, box)
    if region.shape[0] == size:
        return region
    # Lanczos over the box's footprint: anti-aliased like resize_frame, and a few times faster on pixels.
    return np.asarray(Image.fromarray(np.ascontiguousarray(region)).resize((size, size), Image.LANCZOS))


def crop_square(image: np.ndarray, box: Sequence[int], size: int) -> np.ndarray:
    """``box`` of an image (uint8 pixels or a float frame) resized to ``size`` square, as a float32 frame."""
    if image.dtype == np.uint8:
        return to_float_rgb(crop_pixels(image, box, size))
    return resize_frame(cut_square(image, box), size)


@dataclass
class Detections:
    """Faces found in one shrunk frame, as boxes in input pixels."""

    frame: int
    boxes: list[Box]


@dataclass
class Track:
    """One clip's worth of a face: detections whose boxes overlap the first one by ``iou`` or more."""

    face: int
    start: int
    keys: list[tuple[int, Box]] = field(default_factory=list)
    end: int | None = None
    missed: int = 0

    @property
    def first_box(self) -> Box:
        """The box of the clip's first detection, which later detections are compared with."""
        return self.keys[0][1]

    def box_at(self, frame: int) -> Box:
        """The face box at ``frame``: interpolated between detections, held past the last one."""
        frames = np.array([key for key, _ in self.keys], dtype=np.float64)
        boxes = np.array([box for _, box in self.keys], dtype=np.float64)
        return tuple(float(np.interp(frame, frames, boxes[:, i])) for i in range(4))


@dataclass
class Clip:
    """One output of ``dagan crop``: frames [start, end) of an input cut to one fixed square box."""

    file: str
    face: int
    start: int
    end: int
    box: tuple[int, int, int, int]
    #: When the clip starts and ends in the input, in seconds: its audio span.
    seconds: tuple[float, float] = (0.0, 0.0)

    def row(self) -> list[object]:
        """The clip's line of ``tracks.csv``."""
        return [self.file, self.face, self.start, self.end, *self.box]


class FaceFinder:
    """Detects faces on shrunk frames and reports their boxes in input pixels."""

    def __init__(self):
        from dagan.face import FaceAnalyzer

        self.analyzer = FaceAnalyzer()

    def boxes(self, shrunk: np.ndarray, scale: float) -> list[Box]:
        """Faces of ``shrunk`` (an input frame times ``scale``), largest first, in input pixels."""
        return [tuple(v / scale for v in box) for box in self.analyzer.find_boxes(shrunk)]


class FaceTracker:
    """Follows faces from detection to detection and cuts them into tracks (see the module docstring)."""

    def __init__(self, config: CropConfig):
        self.config = config
        self.active: list[Track] = []
        self.finished: list[Track] = []
        self._faces = 0

    def _start(self, frame: int, box: Box, face: int | None = None) -> None:
        if face is None:
            face, self._faces = self._faces, self._faces + 1
        self.active.append(Track(face, frame, [(frame, box)]))

    def _finish(self, track: Track, end: int) -> None:
        track.end = end
        self.active.remove(track)
        self.finished.append(track)

    def update(self, detections: Detections) -> None:
        """Match one frame's faces to the active tracks (greedily, by IoU with each track's first box)."""
        frame, boxes = detections.frame, list(detections.boxes)
        pairs = sorted(
            ((iou(box, track.first_box), b, t) for b, box in enumerate(boxes) for t, track in enumerate(self.active)),
            reverse=True,
        )
        matched_boxes, matched_tracks = set(), set()
        for overlap, b, t in pairs:
            if overlap < self.config.iou or b in matched_boxes or t in matched_tracks:
                continue
            matched_boxes.add(b)
            matched_tracks.add(t)
            self.active[t].keys.append((frame, boxes[b]))
            self.active[t].missed = 0
        unmatched_tracks = [track for t, track in enumerate(self.active) if t not in matched_tracks]
        for b, box in enumerate(boxes):
            if b in matched_boxes:
                continue
            # The face left its clip's box but is still where it last was: the clip ends here, the face goes on.
            moved = max(unmatched_tracks, key=lambda track: iou(box, track.keys[-1][1]), default=None)
            if moved is not None and iou(box, moved.keys[-1][1]) >= SAME_FACE_IOU:
                unmatched_tracks.remove(moved)
                # Seen in between: the old clip runs up to here. Missed in between: up to its last sighting.
                self._finish(moved, frame if moved.missed == 0 else moved.keys[-1][0] + 1)
                self._start(frame, box, moved.face)
            else:
                self._start(frame, box)
        for track in unmatched_tracks:
            track.missed += 1
            if track.missed >= self.config.lost_after:
                self._finish(track, track.keys[-1][0] + 1)

    def cut(self) -> None:
        """End every track at its last detection (a scene cut, or the end of the input)."""
        for track in list(self.active):
            self._finish(track, track.keys[-1][0] + 1)


def thumbnail(pixels: np.ndarray) -> np.ndarray:
    """A THUMBNAIL-wide float copy of a frame, what scene cuts are measured on."""
    height, width = pixels.shape[:2]
    size = (THUMBNAIL, max(1, round(THUMBNAIL * height / width)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.BOX), dtype=np.float32) / 255.0


def find_tracks(
    info: VideoInfo, config: CropConfig, finder: FaceFinder | None = None, quiet: bool = False
) -> tuple[list[Track], list[float]]:
    """The first pass over a video: its face tracks and every frame's time in seconds."""
    finder = finder or FaceFinder()
    tracker = FaceTracker(config)
    previous: tuple[int, np.ndarray, np.ndarray] | None = None  # (frame, shrunk, thumbnail)
    last_detected, scale = -1, 1.0
    times: list[float] = []

    def detect(frame: int, shrunk: np.ndarray) -> None:
        nonlocal last_detected
        tracker.update(Detections(frame, finder.boxes(shrunk, scale)))
        last_detected = frame

    desc = f"find faces {info.path.name}"
    with tqdm(total=info.frame_count, unit="frame", disable=quiet, file=sys.stderr, desc=desc) as bar:
        for frame, (seconds, shrunk) in enumerate(prefetch(iter_timed_pixels(info, config.detect_size), 8)):
            if frame == 0:
                scale = shrunk.shape[1] / (info.width or shrunk.shape[1])
            small = thumbnail(shrunk)
            is_cut = (
                previous is not None
                and previous[2].shape == small.shape
                and float(np.abs(small - previous[2]).mean()) > config.scene_cut
            )
            if is_cut:
                if last_detected != frame - 1:
                    detect(previous[0], previous[1])  # so that clips run right up to the cut
                tracker.cut()
            if is_cut or last_detected < 0 or frame - last_detected >= config.detect_every:
                detect(frame, shrunk)
            previous = (frame, shrunk, small)
            times.append(seconds)
            bar.update(1)
    if previous is not None and last_detected != previous[0]:
        detect(previous[0], previous[1])
    tracker.cut()
    return sorted(tracker.finished, key=lambda track: (track.start, track.face)), times


def clips_of(
    tracks: list[Track], times: list[float], stem: str, config: CropConfig, suffix: str, name_of: str = ""
) -> tuple[list[Clip], dict[str, int]]:
    """The clips worth writing, named ``<stem>_<index><suffix>``, and how many were skipped and why.

    ``times`` are the input's frame times (``find_tracks``); ``name_of`` names the input in warnings.
    """
    name_of = name_of or stem
    step = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 0.04
    clips, skipped = [], {"short": 0, "small": 0}
    for track in tracks:
        if track.end - track.start < config.min_frames:
            skipped["short"] += 1
            continue
        boxes = np.array([box for _, box in track.keys])
        face_size = float(np.median(boxes[:, 2] - boxes[:, 0]))
        if face_size < config.min_face:
            warn(
                f"face {track.face} of {name_of} (frames {track.start}-{track.end}) is {face_size:.0f} pixels wide, "
                f"under {config.min_face}: too small to animate, skipped"
            )
            skipped["small"] += 1
            continue
        name = f"{stem}_{len(clips)}{suffix}"
        end_time = times[track.end] if track.end < len(times) else times[-1] + step
        seconds = (times[track.start], end_time)
        clips.append(Clip(name, track.face, track.start, track.end, framing_box(boxes, config), seconds))
    return clips, skipped


def photo_faces(image: np.ndarray, config: CropConfig, finder: FaceFinder | None = None) -> list[Box]:
    """Face boxes of a photo (float frame or uint8), in its pixels, left to right."""
    finder = finder or FaceFinder()
    pixels = image if image.dtype == np.uint8 else to_uint8(image)
    limit = round(config.detect_size * config.photo_detect_factor)
    scale = min(1.0, limit / max(pixels.shape[:2]))
    if scale < 1:
        size = (max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale)))
        shrunk = np.asarray(Image.fromarray(pixels).resize(size, Image.BOX))
        scale = shrunk.shape[1] / pixels.shape[1]
    else:
        shrunk = pixels
    return sorted(finder.boxes(shrunk, scale), key=lambda box: box[0] + box[2])


def usable_faces(boxes: list[Box], config: CropConfig, name: str) -> list[tuple[int, Box]]:
    """(index, box) of the faces wide enough to animate; the others are warned about."""
    kept = []
    for index, box in enumerate(boxes):
        width = box[2] - box[0]
        if width < config.min_face:
            warn(f"face {index} of {name} is {width:.0f} pixels wide, under {config.min_face}: too small to animate")
            continue
        kept.append((index, box))
    return kept


def draw_boxes(pixels: np.ndarray, boxes: list[tuple[Sequence[float], str]], width: int) -> Image.Image:
    """A ``width``-wide copy of a frame with labelled boxes drawn on it."""
    image = Image.fromarray(pixels)
    scale = width / image.width
    image = image.resize((width, max(1, round(image.height * scale))), Image.BILINEAR)
    draw = ImageDraw.Draw(image)
    for box, label in boxes:
        x0, y0, x1, y1 = (v * scale for v in box)
        draw.rectangle([x0, y0, x1, y1], outline=(255, 214, 0), width=2)
        draw.text((max(x0, 0) + 3, max(y0, 0) + 2), label, fill=(255, 214, 0))
    return image


def contact_sheet(tiles: list[Image.Image], more: int = 0) -> Image.Image:
    """Tiles in rows of PREVIEW_COLUMNS on a dark background; ``more`` counts the crops without a tile."""
    if not tiles:
        tiles = [Image.new("RGB", (PREVIEW_TILE, PREVIEW_TILE // 2), (40, 40, 40))]
        ImageDraw.Draw(tiles[0]).text((10, 10), "no face found", fill=(255, 255, 255))
    columns = min(PREVIEW_COLUMNS, len(tiles))
    row_height = max(tile.height for tile in tiles)
    rows = math.ceil(len(tiles) / columns)
    footer = 20 if more else 0
    sheet = Image.new("RGB", (columns * PREVIEW_TILE, rows * row_height + footer), (24, 24, 24))
    for index, tile in enumerate(tiles):
        sheet.paste(tile, ((index % columns) * PREVIEW_TILE, (index // columns) * row_height))
    if more:
        ImageDraw.Draw(sheet).text((6, rows * row_height + 4), f"... and {more} more crops", fill=(255, 255, 255))
    return sheet


@dataclass
class CropReport:
    """What ``crop_files`` wrote and left out."""

    clips: list[Clip]
    skipped_short: int = 0
    skipped_small: int = 0
    inputs: int = 0
    frames: int = 0
    preview: Path | None = None
    tracks: Path | None = None

    def summary(self) -> str:
        """The one-line summary ``dagan crop`` prints."""
        crops = len(self.clips)
        text = f"wrote {crops} crop{'s' * (crops != 1)} from {self.inputs} input{'s' * (self.inputs != 1)}"
        text += f" ({self.frames} frames); skipped {self.skipped_short} shorter than --min-frames"
        return text + f" and {self.skipped_small} faces too small"


def crop_inputs(path: Path) -> list[Path]:
    """``--input``: a video, an image, or a folder of them (in name order)."""
    if not path.exists():
        raise DaganError(f"--input {path} does not exist")
    if path.is_dir():
        files = list_media_files(path)
        if not files:
            raise DaganError(f"--input folder {path} holds no videos or images")
        return files
    if path.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
        raise DaganError(f"--input {path} is neither a video ({', '.join(VIDEO_SUFFIXES)}) nor an image")
    return [path]


def _write_clips(
    info: VideoInfo, clips: list[Clip], out: Path, config: CropConfig, quiet: bool, tile_budget: int
) -> list[Image.Image]:
    """The second pass: every clip's box cut out of the full frames and written; returns (at most
    ``tile_budget``) preview tiles."""
    tiles: list[Image.Image] = []
    writing: list[tuple[Clip, Mp4Writer | PngDirectoryWriter]] = []
    audio = info.path if info.has_audio else None
    last = max((clip.end for clip in clips), default=0)
    decoded = 0
    try:
        desc = f"crop {info.path.name}"
        with tqdm(total=last, unit="frame", disable=quiet, file=sys.stderr, desc=desc) as bar:
            for frame, pixels in enumerate(prefetch(itertools.islice(iter_pixels(info), last), 8)):
                for clip in clips:
                    if clip.start == frame:
                        if config.format == "png":
                            writer = PngDirectoryWriter(out / clip.file, overwrite=True)
                        else:
                            writer = Mp4Writer(out / clip.file, info.fps, audio, audio_span=clip.seconds)
                        writing.append((clip, writer))
                    if (clip.start + clip.end) // 2 == frame and len(tiles) < tile_budget:
                        label = f"{clip.file}  face {clip.face}  frames {clip.start}-{clip.end}"
                        tiles.append(draw_boxes(pixels, [(clip.box, label)], PREVIEW_TILE))
                for clip, writer in writing:
                    writer.write(crop_pixels(pixels, clip.box, config.size))
                for clip, writer in [item for item in writing if item[0].end == frame + 1]:
                    writing.remove((clip, writer))
                    writer.close()
                decoded += 1
                bar.update(1)
    except BaseException:
        for _, writer in writing:
            writer.abort()
        raise
    if decoded < last:
        for _, writer in writing:
            writer.abort()
        raise DaganError(f"{info.path} gave {decoded} frames on its second reading, {last} on its first")
    return tiles


def crop_files(
    input: str | Path,
    out: str | Path,
    config: CropConfig | None = None,
    quiet: bool = False,
) -> CropReport:
    """The ``dagan crop`` job: every face of a video, image or folder of them, cut into talking-head crops.

    Writes ``out/<stem>_<index>.mp4`` (or a frame folder with ``config.format`` png; an image gives
    ``out/<stem>_<face>.png``), ``out/tracks.csv`` and ``out/preview.jpg``.
    """
    config = config or CropConfig()
    if config.size < 16 or config.size % 2:
        raise DaganError(f"--size must be an even number of pixels, at least 16, got {config.size}")
    if not 0 < config.iou <= 1:
        raise DaganError(f"--iou must be in (0, 1], got {config.iou}")
    if not 0 <= config.increase <= config.max_increase:
        raise DaganError(f"--increase must be between 0 and {config.max_increase:g}, got {config.increase}")
    inputs = crop_inputs(Path(input))
    out = Path(out)
    check_outputs({"--out": out}, {"--input": inputs}, folders=["--out"])
    if out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()):
        raise DaganError(f"--out {out} is not empty: give a new or empty folder")
    report = CropReport(clips=[], inputs=len(inputs))
    finder = FaceFinder()
    tiles: list[Image.Image] = []
    left_out = 0  # clips and photos without a tile in the preview
    stems = [path.stem for path in inputs]
    with removed_if_failed_empty(out):
        check_writable_directory(out)
        try:
            for path in inputs:
                stem = path.stem if stems.count(path.stem) == 1 else path.name.replace(".", "_")
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    clips, tile, small = _crop_photo(path, stem, out, config, finder)
                    report.skipped_small += small
                    report.frames += 1
                    if len(tiles) < PREVIEW_TILES:
                        tiles.append(tile)
                    else:
                        left_out += 1
                else:
                    info = probe_video(path, "--input")
                    tracks, times = find_tracks(info, config, finder, quiet)
                    suffix = "" if config.format == "png" else ".mp4"
                    clips, skipped = clips_of(tracks, times, stem, config, suffix, path.name)
                    report.skipped_short += skipped["short"]
                    report.skipped_small += skipped["small"]
                    report.frames += len(times)
                    report.clips += clips  # listed before they are written, so a failure removes them
                    video_tiles = _write_clips(info, clips, out, config, quiet, PREVIEW_TILES - len(tiles))
                    tiles += video_tiles
                    left_out += len(clips) - len(video_tiles)
                    continue
                report.clips += clips
            _write_tracks(out / "tracks.csv", report.clips)
            with atomic_output(out / "preview.jpg") as tmp:
                contact_sheet(tiles, left_out).save(tmp, format="JPEG", quality=90)
        except BaseException:
            # --out was new or empty: what this run wrote goes, so a rerun is not refused as "not empty".
            for clip in report.clips:
                target = out / clip.file
                if target.is_dir():
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    target.unlink(missing_ok=True)
            raise
    report.tracks, report.preview = out / "tracks.csv", out / "preview.jpg"
    return report


def _write_tracks(path: Path, clips: list[Clip]) -> None:
    """``tracks.csv``: TRACKS_HEADER, then one row per clip or photo crop."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TRACKS_HEADER)
    writer.writerows(clip.row() for clip in clips)
    with atomic_output(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")


def _crop_photo(
    path: Path, stem: str, out: Path, config: CropConfig, finder: FaceFinder
) -> tuple[list[Clip], Image.Image, int]:
    """One ``<stem>_<face>.png`` per face of a photo; its preview tile; how many faces were too small."""
    image = read_image(path)
    found = photo_faces(image, config, finder)
    faces = usable_faces(found, config, path.name)
    clips = []
    for index, box in faces:
        crop_box = framing_box(np.array([box]), config)
        clip = Clip(f"{stem}_{index}.png", index, 0, 1, crop_box)
        write_png(out / clip.file, crop_square(image, crop_box, config.size))
        clips.append(clip)
    labels = [(clip.box, f"{clip.file}  face {clip.face}") for clip in clips]
    width = PREVIEW_TILE * (2 if image.shape[1] > image.shape[0] else 1)
    return clips, draw_boxes(to_uint8(image), labels, width), len(found) - len(faces)


def crop_config(**values: object) -> CropConfig:
    """A ``CropConfig`` from the values given (None keeps the default)."""
    return dataclasses.replace(CropConfig(), **{k: v for k, v in values.items() if v is not None})


def iter_crops(info: VideoInfo, clips: list[Clip], size: int) -> Iterator[tuple[int, Clip | None, np.ndarray | None]]:
    """(frame, clip, crop) for every frame of a video; clip and crop are None on frames that no clip covers.

    ``clips`` must not overlap (``animate --crop`` follows one face at a time).
    """
    by_start = sorted(clips, key=lambda clip: clip.start)
    current = 0
    for frame, pixels in enumerate(iter_pixels(info)):
        while current < len(by_start) and by_start[current].end <= frame:
            current += 1
        clip = by_start[current] if current < len(by_start) and by_start[current].start <= frame else None
        yield frame, clip, (crop_square(pixels, clip.box, size) if clip else None)
