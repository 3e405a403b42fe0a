"""Synthetic "real footage": the sample driving video's face placed in larger frames, with cuts and sound.

Used by the crop and paste-back tests and by ``benchmarks/crop.py``. Needs ``../shared/data``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DRIVING = SHARED_DATA / "driving.mp4"
PORTRAIT = SHARED_DATA / "src.png"
AUDIO_RATE = 16000


@dataclass
class Scene:
    """Where the face sits in one scene: its crop's size (0: none) and top-left corner at the first and last frame."""

    frames: int
    size: int
    start: tuple[int, int]
    end: tuple[int, int]
    background: tuple[int, int, int]


def textured_background(width: int, height: int, colour: tuple[int, int, int], seed: int) -> np.ndarray:
    """A smooth random texture around ``colour``: something for the cut detector to see, no face in it."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-60, 60, size=(height // 40 + 2, width // 40 + 2, 3)).astype(np.float32)
    noise = np.asarray(Image.fromarray(coarse[..., 0]).resize((width, height), Image.BICUBIC))
    base = np.array(colour, dtype=np.float32) + noise[..., None]
    return np.clip(base, 0, 255).astype(np.uint8)


def driving_faces(count: int) -> list[np.ndarray]:
    """The first ``count`` frames of the sample driving video (uint8, 256x256), looping if needed."""
    frames = []
    with av.open(str(DRIVING)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
    return [frames[i % len(frames)] for i in range(count)]


def scene_frames(scene: Scene, faces: list[np.ndarray], width: int, height: int, seed: int) -> list[np.ndarray]:
    """The frames of one scene: the face crops pasted onto the background along a straight path."""
    background = textured_background(width, height, scene.background, seed)
    out = []
    for index, face in enumerate(faces):
        t = index / max(scene.frames - 1, 1)
        x = round(scene.start[0] + t * (scene.end[0] - scene.start[0]))
        y = round(scene.start[1] + t * (scene.end[1] - scene.start[1]))
        frame = background.copy()
        if scene.size:  # a scene of size 0 has no face
            patch = np.asarray(Image.fromarray(face).resize((scene.size, scene.size), Image.LANCZOS))
            frame[y : y + scene.size, x : x + scene.size] = patch
        out.append(frame)
    return out


def write_footage(
    path: Path, scenes: list[Scene], width: int = 640, height: int = 360, fps: int = 25, audio: bool = True
) -> list[tuple[int, int, tuple[int, int, int, int]]]:
    """Write an H.264 MP4 of ``scenes`` with a swelling tone; returns (start, end, pasted square) per scene."""
    faces = driving_faces(sum(scene.frames for scene in scenes))
    spans, start = [], 0
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("aac", rate=AUDIO_RATE, layout="mono") if audio else None
        for number, scene in enumerate(scenes):
            frames = scene_frames(scene, faces[start : start + scene.frames], width, height, seed=number)
            for frame in frames:
                for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            corner = scene.start
            spans.append((start, start + scene.frames, (*corner, corner[0] + scene.size, corner[1] + scene.size)))
            start += scene.frames
        for packet in video.encode(None):
            container.mux(packet)
        if sound is not None:
            seconds = start / fps
            t = np.arange(round(seconds * AUDIO_RATE)) / AUDIO_RATE
            tone = (tone_envelope(t, seconds) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate = AUDIO_RATE
            for packet in sound.encode(frame):
                container.mux(packet)
            for packet in sound.encode(None):
                container.mux(packet)
    return spans


def tone_envelope(seconds: np.ndarray, total: float) -> np.ndarray:
    """The amplitude of the footage's tone at a time: it grows steadily, so a piece of it tells when it was cut."""
    return 0.05 + 0.25 * seconds / total


def photo_with_portraits(
    path: Path, corners: list[tuple[int, int]], size: int = 300, canvas: tuple[int, int] = (1200, 800)
) -> np.ndarray:
    """A photo (saved at ``path``) of the sample portrait, ``size`` pixels, at each corner; returns it as a frame."""
    portrait = Image.open(PORTRAIT).convert("RGB").resize((size, size), Image.LANCZOS)
    photo = Image.new("RGB", canvas, (86, 112, 78))
    for corner in corners:
        photo.paste(portrait, corner)
    photo.save(path)
    return np.asarray(photo, dtype=np.float32) / 255


def audio_seconds(path: Path) -> float:
    """Seconds of decoded audio in a file (0 without an audio track)."""
    samples, rate = 0, 1
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return 0.0
        for frame in container.decode(audio=0):
            samples += frame.samples
            rate = frame.sample_rate
    return samples / rate


def video_frames(path: Path) -> tuple[int, Fraction]:
    """Frame count (decoded) and frame rate of a video."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(stream)), Fraction(stream.average_rate)


TWO_SCENES = [
    Scene(frames=40, size=200, start=(60, 40), end=(100, 60), background=(70, 110, 160)),
    Scene(frames=35, size=256, start=(340, 60), end=(340, 60), background=(170, 120, 60)),
]
