"""Streaming video input and output with the FFmpeg that PyAV ships (no system FFmpeg needed).

Inputs are decoded frame by frame and outputs encoded as frames arrive, so memory does
not grow with video length.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Self

import av
import numpy as np
from PIL import Image

from dagan.errors import DaganError, first_line
from dagan.io.atomic import (
    STAGING_PREFIX,
    AtomicFile,
    check_frame_folder,
    check_writable_directory,
    describe_write_failure,
    remove_stale_temporaries,
    write_frame_manifest,
)
from dagan.io.image import (
    IMAGE_SUFFIXES,
    check_frame,
    check_pixels,
    list_frame_files,
    read_image,
    to_float_rgb,
    to_uint8,
    write_png,
)

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".gif", ".webm", ".mkv", ".m4v")
DEFAULT_FPS = Fraction(25)
#: Audio codecs an MP4 container can hold as they are; others are re-encoded to AAC.
MP4_AUDIO_CODECS = {"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3"}

logging.getLogger("libav").setLevel(logging.ERROR)


@dataclass
class VideoInfo:
    """What is known about a driving input before decoding it."""

    path: Path
    fps: Fraction
    frame_count: int | None
    has_audio: bool
    is_directory: bool
    #: The frame size, from the stream header or the first image's.
    width: int | None = None
    height: int | None = None


def probe_video(path: str | Path, what: str = "driving input") -> VideoInfo:
    """Open a video file or a folder of frames, check it has at least one frame, and describe it.

    ``what`` names the input in error messages. The frame size is checked against the pixel limit
    from the stream header, before any frame is decoded.
    """
    path = Path(path)
    if not path.exists():
        raise DaganError(f"{what} {path} does not exist")
    if not (path.is_dir() or path.is_file()):
        # A FIFO or a device would block or never end.
        raise DaganError(f"{what} {path} is not a regular file or folder")
    if path.is_dir():
        files = list_frame_files(path)
        if not files:
            raise DaganError(f"{what} folder {path} holds no image frames ({', '.join(IMAGE_SUFFIXES)})")
        try:
            with Image.open(files[0]) as first_image:
                width, height = first_image.size
        except (OSError, ValueError, Image.DecompressionBombError):
            width = height = None  # reading the frame itself says what is wrong with it
        return VideoInfo(path, DEFAULT_FPS, len(files), False, True, width, height)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DaganError(f"{what} {path} has no video stream")
            stream = container.streams.video[0]
            check_pixels(stream.codec_context.width or 1, stream.codec_context.height or 1, path)
            fps = stream.average_rate or stream.guessed_rate or DEFAULT_FPS
            count = stream.frames or None
            has_audio = bool(container.streams.audio)
            first = next(container.decode(stream), None)
            width, height = (first.width, first.height) if first is not None else (None, None)
    except DaganError:
        raise
    except (av.FFmpegError, OSError, ValueError, StopIteration) as exc:
        raise DaganError(f"{what} {path} is an unreadable video ({first_line(exc)})") from exc
    if first is None:
        raise DaganError(f"{what} {path} is a video with no frames")
    return VideoInfo(path, Fraction(fps), count, has_audio, False, width, height)


def video_seconds(path: str | Path, what: str = "driving input") -> float:
    """A video's length in seconds: from its frame count, else from its container, else by counting frames."""
    info = probe_video(path, what)
    if info.frame_count:
        return info.frame_count / float(info.fps)
    try:
        with av.open(str(path)) as container:
            if container.duration:
                return container.duration / av.time_base
    except av.error.FFmpegError:
        pass  # probe_video read it: counting its frames below says what is wrong, if anything
    last = 0.0
    for seconds, _ in iter_timed_pixels(info, max_side=32):  # shrunk: only the timestamps matter
        last = seconds
    return last


def _decoded(info: VideoInfo) -> Iterator[av.VideoFrame]:
    """The decoded frames of a video file; a decoding error or a clear shortfall is one DaganError."""
    decoded = 0
    try:
        with av.open(str(info.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                decoded += 1
                yield frame
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise DaganError(f"video {info.path} is corrupt after {decoded} frames ({first_line(exc)})") from exc
    # Container frame counts can overstate what edit lists let through; only a clear shortfall is truncation.
    if info.frame_count and decoded < 0.95 * info.frame_count - 1:
        raise DaganError(f"video {info.path} is truncated: decoded {decoded} of {info.frame_count} frames")


def _rgb(frame: av.VideoFrame, info: VideoInfo, width: int, height: int) -> np.ndarray:
    """A decoded frame as uint8 RGB pixels at ``width`` x ``height``; a frame that will not convert is a DaganError."""
    try:
        if (width, height) == (frame.width, frame.height):
            return frame.to_ndarray(format="rgb24")
        return frame.reformat(width, height, format="rgb24", interpolation="AREA").to_ndarray()
    except (av.FFmpegError, ValueError) as exc:
        raise DaganError(f"video {info.path} has a frame that cannot be read as RGB ({first_line(exc)})") from exc


def iter_frames(info: VideoInfo) -> Iterator[np.ndarray]:
    """Yield the frames (float32 RGB in [0, 1], (H, W, 3)) of a video or a frame folder, one at a time."""
    if info.is_directory:
        for file in list_frame_files(info.path):
            yield read_image(file)
        return
    for frame in _decoded(info):
        yield to_float_rgb(_rgb(frame, info, frame.width, frame.height))


def iter_pixels(info: VideoInfo, max_side: int | None = None) -> Iterator[np.ndarray]:
    """Yield the frames as decoded uint8 RGB pixels (H, W, 3), shrunk so the long side is at most ``max_side``.

    The one exception to the frame contract, for tools that look at large frames only in part
    (``dagan crop`` cuts a face out before converting it; detection runs on a shrunk copy).
    """
    for _, pixels in iter_timed_pixels(info, max_side):
        yield pixels


def iter_timed_pixels(info: VideoInfo, max_side: int | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """``iter_pixels`` with each frame's presentation time in seconds (phone videos often vary their frame rate).

    Every frame must have the first one's size: a frame folder of mixed sizes is refused, naming the file.
    """

    def shrunk_size(width: int, height: int) -> tuple[int, int]:
        scale = 1.0 if max_side is None else min(1.0, max_side / max(width, height))
        return max(1, round(width * scale)), max(1, round(height * scale))

    if info.is_directory:
        first_size = None
        for index, file in enumerate(list_frame_files(info.path)):
            pixels = to_uint8(read_image(file))
            first_size = first_size or pixels.shape[:2]
            if pixels.shape[:2] != first_size:
                raise DaganError(
                    f"frame {file} is {pixels.shape[1]}x{pixels.shape[0]}, unlike the folder's first frame "
                    f"({first_size[1]}x{first_size[0]}): a frame folder holds one size"
                )
            width, height = shrunk_size(pixels.shape[1], pixels.shape[0])
            if (width, height) != (pixels.shape[1], pixels.shape[0]):
                pixels = np.asarray(Image.fromarray(pixels).resize((width, height), Image.BILINEAR, reducing_gap=2.0))
            yield index / float(info.fps), pixels
        return
    for index, frame in enumerate(_decoded(info)):
        seconds = frame.time if frame.time is not None else index / float(info.fps)
        yield seconds, _rgb(frame, info, *shrunk_size(frame.width, frame.height))


def list_media_files(folder: str | Path) -> list[Path]:
    """The images and videos of a folder in name order, without hidden files (``._x.png``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DaganError(f"{folder} is not a folder")
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES and not p.name.startswith(".")
    )


def media_files_by_stem(folder: str | Path) -> dict[str, Path]:
    """The images and videos of a folder keyed by file stem, in name order, without hidden files (``._x.png``)."""
    return {p.stem: p for p in list_media_files(folder)}


def read_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """The first audio track as int16 mono at ``sample_rate`` (as ``ffmpeg -ac 1 -ar RATE`` gives); empty if none."""
    chunks = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return np.zeros(0, dtype=np.int16)
            resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
            for frame in container.decode(container.streams.audio[0]):
                chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise DaganError(f"cannot read the audio of {path} ({first_line(exc)})") from exc
    return np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, dtype=np.int16)


class _FinishedOnSuccess:
    """A writer (with ``close``: finish and move into place, ``abort``: discard) as a context manager."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: object) -> None:
        if kind is None:
            self.close()  # type: ignore[attr-defined]
        else:
            self.abort()  # type: ignore[attr-defined]


class Mp4Writer(_FinishedOnSuccess):
    """H.264 MP4 writer that copies (or, if it must, re-encodes) the audio of another file.

    It owns its atomic output: frames go to a temporary file beside ``path``, which ``close``
    renames onto it and ``abort`` removes. As a context manager it closes on success and aborts
    on any failure.
    """

    def __init__(
        self,
        path: str | Path,
        fps: Fraction,
        audio_from: Path | None = None,
        crf: int = 18,
        audio_span: tuple[float, float] | None = None,
    ):
        self.path = Path(path)
        #: (start, end) seconds of ``audio_from`` to keep (a clip's span); re-encoded to AAC when given.
        self.audio_span = audio_span
        self._file = AtomicFile(self.path)
        self.fps = fps
        self.audio_from = audio_from
        self.crf = crf
        self._container = None
        self._stream = None
        self._audio_source = None
        self._audio_in = None
        self._audio_out = None
        self._audio_copy = False

    def _open(self, height: int, width: int) -> None:
        try:
            self._container = av.open(str(self._file.path), mode="w", format="mp4")
        except (av.FFmpegError, OSError) as exc:
            raise DaganError(describe_write_failure(self.path, exc)) from exc
        stream = self._container.add_stream("libx264", rate=self.fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(self.crf), "preset": "medium"}
        self._stream = stream
        if self.audio_from is not None:
            self._add_audio_stream()

    def _add_audio_stream(self) -> None:
        # Every stream must exist before the first packet is written.
        try:
            source = av.open(str(self.audio_from))
        except (av.FFmpegError, OSError) as exc:
            raise DaganError(f"cannot read the audio of {self.audio_from} ({first_line(exc)})") from exc
        if not source.streams.audio:
            source.close()
            return
        self._audio_source, self._audio_in = source, source.streams.audio[0]
        self._audio_copy = self.audio_span is None and self._audio_in.codec_context.name in MP4_AUDIO_CODECS
        if self._audio_copy:
            self._audio_out = self._container.add_stream_from_template(self._audio_in)
        else:
            rate, layout = self._audio_in.codec_context.sample_rate, self._audio_layout()
            self._audio_out = self._container.add_stream("aac", rate=rate, layout=layout)

    def write(self, frame: np.ndarray) -> None:
        """Encode one frame (or uint8 pixel values as they are)."""
        if frame.dtype != np.uint8:
            frame = to_uint8(check_frame(frame))
        if self._container is None:
            height, width = frame.shape[0] - frame.shape[0] % 2, frame.shape[1] - frame.shape[1] % 2
            if height < 2 or width < 2:
                raise DaganError(
                    f"cannot encode {self.path}: frames of {frame.shape[1]}x{frame.shape[0]} are too small"
                )
            self._open(height, width)
        frame = frame[: self._stream.height, : self._stream.width]
        try:
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                self._container.mux(packet)
        except (av.FFmpegError, OSError) as exc:
            raise DaganError(describe_write_failure(self.path, exc)) from exc

    def _audio_layout(self) -> str:
        """The source's channel layout by a name AAC takes (PCM tracks often have unnamed ones, "1 channels")."""
        context = self._audio_in.codec_context
        return {1: "mono", 2: "stereo"}.get(context.channels, context.layout.name)

    def _audio_frames(self) -> Iterator[av.AudioFrame]:
        """The source's audio frames, cut to ``audio_span`` to the sample when one is given."""
        if self.audio_span is None:
            for frame in self._audio_source.decode(self._audio_in):
                frame.pts = None
                yield frame
            return
        start, end = self.audio_span
        rate, layout = self._audio_in.codec_context.sample_rate, self._audio_layout()
        # A planar float format: samples can be cut per channel row and handed to the AAC encoder as they are.
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        if start > 1.0 and self._audio_in.time_base:
            self._audio_source.seek(int((start - 1.0) / self._audio_in.time_base), stream=self._audio_in)
        position = None  # seconds at the next sample
        decoded = itertools.chain.from_iterable(
            resampler.resample(frame) for frame in self._audio_source.decode(self._audio_in)
        )
        for frame in itertools.chain(decoded, resampler.resample(None)):
            if position is None:
                position = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
            samples = frame.to_ndarray()
            first, last = round((start - position) * rate), round((end - position) * rate)
            position += samples.shape[1] / rate
            kept = samples[:, max(first, 0) : max(min(last, samples.shape[1]), 0)]
            if kept.shape[1]:
                cut = av.AudioFrame.from_ndarray(np.ascontiguousarray(kept), format="fltp", layout=layout)
                cut.sample_rate = rate
                yield cut
            if last <= samples.shape[1]:
                return

    def _write_audio(self) -> None:
        if self._audio_copy:
            for packet in self._audio_source.demux(self._audio_in):
                if packet.dts is None:
                    continue
                packet.stream = self._audio_out
                self._container.mux(packet)
            return
        for frame in self._audio_frames():
            for packet in self._audio_out.encode(frame):
                self._container.mux(packet)
        for packet in self._audio_out.encode(None):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder, add the audio track, finish the file and move it into place."""
        if self._container is None:
            self._file.discard()
            raise DaganError(f"no frames were produced for {self.path}")
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            try:
                if self._audio_out is not None:
                    self._write_audio()
            finally:
                if self._audio_source is not None:
                    self._audio_source.close()
            self._container.close()
        except (av.FFmpegError, OSError, ValueError) as exc:  # a full disk shows here, when the file is finished
            self.abort()
            raise DaganError(describe_write_failure(self.path, exc)) from exc
        except BaseException:
            self.abort()
            raise
        self._file.commit()

    def abort(self) -> None:
        """Close without finishing and remove the temporary file; ``path`` is left as it was."""
        for handle in (self._audio_source, self._container):
            if handle is not None:
                try:
                    handle.close()
                except (av.FFmpegError, OSError):
                    pass
        self._file.discard()


class PngDirectoryWriter(_FinishedOnSuccess):
    """Writes lossless frames ``000000.png``, ``000001.png``, ... into a directory.

    The directory must be new or empty, or hold only an earlier run's frames and ``overwrite``
    be given (``check_frame_folder``). Frames go to a hidden staging folder first and are moved
    in by ``close``, so a failed run leaves the directory as it was.
    """

    def __init__(self, directory: str | Path, overwrite: bool = False):
        self._earlier = check_frame_folder(directory, overwrite)
        self.directory = check_writable_directory(directory)
        remove_stale_temporaries(self.directory)
        self._staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.directory))
        self.count = 0

    def write(self, frame: np.ndarray) -> None:
        """Write the next frame."""
        write_png(self._staging / f"{self.count:06d}.png", frame)
        self.count += 1

    def close(self) -> None:
        """Move the finished frames into place and drop the earlier run's frames past this run's end."""
        names = [f"{index:06d}.png" for index in range(self.count)]
        # Listed before they land, so a run killed half-way still leaves only recorded frames.
        write_frame_manifest(self.directory, self._earlier | set(names))
        for name in names:
            os.replace(self._staging / name, self.directory / name)
        shutil.rmtree(self._staging, ignore_errors=True)
        for stale in sorted(self._earlier - set(names)):
            (self.directory / stale).unlink(missing_ok=True)
        write_frame_manifest(self.directory, names)

    def abort(self) -> None:
        """Discard the staged frames."""
        shutil.rmtree(self._staging, ignore_errors=True)


def read_video(path: str | Path) -> tuple[list[np.ndarray], Fraction]:
    """A whole video or frame folder in memory: its frames (the frame contract) and frame rate.

    For short clips and notebooks; the commands stream with ``probe_video`` and ``iter_frames``.
    """
    info = probe_video(path)
    return list(iter_frames(info)), info.fps
