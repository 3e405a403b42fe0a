"""Training data in the VoxCeleb layout: ``train/`` and ``test/`` folders of clips.

A clip is a video file (mp4, mov, avi, gif, webm, mkv) or a folder of frames; ``id#clip``
names give identity sampling (pick an identity, then one of its clips). Each item is two
frames of one clip. All randomness comes from a per-item generator seeded with
(seed, epoch, index), so an interrupted run resumes with exactly the same data.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from dagan.config import DataConfig
from dagan.data import colour
from dagan.errors import DaganError
from dagan.io.image import list_frame_files, read_image, resize_frame
from dagan.io.video import VIDEO_SUFFIXES, iter_frames, probe_video


def list_clips(directory: str | Path) -> list[Path]:
    """Clips in a folder: video files and frame folders, sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DaganError(f"data folder {directory} does not exist")
    clips = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            clips.append(path)
        elif path.is_dir() and list_frame_files(path):
            clips.append(path)
    return clips


def identity_of(clip: Path) -> str:
    """The identity part of a VoxCeleb-style name (``id10001#7w0IBEWc9Qw#000993#001143`` -> ``id10001``)."""
    return clip.stem.split("#")[0] if clip.is_file() else clip.name.split("#")[0]


class ClipReader:
    """Reads selected frames of clips as float32 RGB arrays, optionally keeping decoded clips."""

    def __init__(self, size: int, cache_clips: int = 0):
        self.size = size
        self.cache_clips = cache_clips
        self._cache: OrderedDict[Path, list[np.ndarray]] = OrderedDict()
        self._lengths: dict[Path, int] = {}

    def length(self, clip: Path) -> int:
        """Number of frames of a clip."""
        if clip not in self._lengths:
            if clip.is_dir():
                self._lengths[clip] = len(list_frame_files(clip))
            else:
                info = probe_video(clip)
                self._lengths[clip] = info.frame_count or len(self._decode(clip))
        return self._lengths[clip]

    def _decode(self, clip: Path) -> list[np.ndarray]:
        if clip in self._cache:
            self._cache.move_to_end(clip)
            return self._cache[clip]
        frames = [resize_frame(f, self.size) for f in iter_frames(probe_video(clip))]
        self._lengths[clip] = len(frames)
        if self.cache_clips:
            self._cache[clip] = frames
            while len(self._cache) > self.cache_clips:
                self._cache.popitem(last=False)
        return frames

    def preload(self, clips: list[Path], quiet: bool = True) -> None:
        """Decode up to ``cache_clips`` video clips now: worker processes forked later share them."""
        videos = [c for c in clips if not c.is_dir()][: self.cache_clips]
        for clip in tqdm(videos, desc="decoding clips", unit="clip", disable=quiet, file=sys.stderr):
            self._decode(clip)

    def frames(self, clip: Path, indices: list[int]) -> list[np.ndarray]:
        """The frames at ``indices`` (H, W, 3) float32 in [0, 1]."""
        if clip.is_dir():
            files = list_frame_files(clip)
            return [resize_frame(read_image(files[i], self.size), self.size) for i in indices]
        if self.cache_clips or clip in self._cache:
            frames = self._decode(clip)
            return [frames[i] for i in indices]
        wanted = {i: None for i in indices}
        last, frame = max(indices), None
        decoded = 0
        for decoded, frame in enumerate(iter_frames(probe_video(clip)), start=1):
            if decoded - 1 in wanted:
                wanted[decoded - 1] = resize_frame(frame, self.size)
            if decoded - 1 >= last:
                break
        if frame is None:
            raise DaganError(f"clip {clip} has no frames")
        if decoded - 1 < last:  # the container promised more frames than it holds
            self._lengths[clip] = decoded
            tail = resize_frame(frame, self.size)
            return [wanted[i] if wanted[i] is not None else tail for i in indices]
        return [wanted[i] for i in indices]


def _to_tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1)))


def _jitter(frames: list[torch.Tensor], config: DataConfig, rng: np.random.Generator) -> list[torch.Tensor]:
    """Colour jitter in random order, with one set of factors for both frames (like ColorJitter)."""
    brightness = rng.uniform(max(0.0, 1 - config.jitter_brightness), 1 + config.jitter_brightness)
    contrast = rng.uniform(max(0.0, 1 - config.jitter_contrast), 1 + config.jitter_contrast)
    saturation = rng.uniform(max(0.0, 1 - config.jitter_saturation), 1 + config.jitter_saturation)
    hue = rng.uniform(-config.jitter_hue, config.jitter_hue)
    steps = [
        lambda f: colour.adjust_brightness(f, brightness),
        lambda f: colour.adjust_contrast(f, contrast),
        lambda f: colour.adjust_saturation(f, saturation),
        lambda f: colour.adjust_hue(f, hue),
    ]
    for step in rng.permutation(len(steps)):
        frames = [steps[step](f) for f in frames]
    return [f.clamp(0, 1) for f in frames]


class FramesDataset(Dataset):
    """Pairs of frames (source, driving) from the clips of one split."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        config: DataConfig | None = None,
        augment: bool | None = None,
        seed: int = 0,
        cache_clips: int = 0,
    ):
        self.config = config or DataConfig()
        self.clips = list_clips(Path(root) / split)
        if not self.clips:
            raise DaganError(f"no clips (videos or frame folders) in {Path(root) / split}")
        self.split = split
        self.augment = (split == "train") if augment is None else augment
        self.seed = seed
        self.epoch = 0
        self.reader = ClipReader(self.config.frame_shape[0], cache_clips)
        by_identity: dict[str, list[Path]] = {}
        for clip in self.clips:
            by_identity.setdefault(identity_of(clip), []).append(clip)
        self.identities = sorted(by_identity)
        self.by_identity = by_identity
        self.id_sampling = self.config.id_sampling and split == "train"

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws (frames, clip, augmentation) for a new epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.identities) if self.id_sampling else len(self.clips)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        """Item ``index % len(self)``; the full index (and the epoch) seeds its random draws."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        index %= len(self)
        if self.id_sampling:
            options = self.by_identity[self.identities[index]]
            clip = options[int(rng.integers(len(options)))]
        else:
            clip = self.clips[index]
        length = self.reader.length(clip)
        if length < 1:
            raise DaganError(f"clip {clip} has no frames")
        indices = sorted(int(i) for i in rng.choice(length, size=2, replace=True))
        source, driving = (_to_tensor(f) for f in self.reader.frames(clip, indices))
        if self.augment:
            if self.config.horizontal_flip and rng.random() < 0.5:
                source, driving = source.flip(-1), driving.flip(-1)
            if self.config.time_flip and rng.random() < 0.5:
                source, driving = driving, source
            source, driving = _jitter([source, driving], self.config, rng)
        return {"source": source, "driving": driving, "name": clip.name}


class DatasetRepeater(Dataset):
    """Repeat a dataset ``num_repeats`` times per epoch; repeats draw different frames."""

    def __init__(self, dataset: FramesDataset, num_repeats: int):
        self.dataset = dataset
        self.num_repeats = num_repeats

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to the wrapped dataset."""
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return self.num_repeats * len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        return self.dataset[index]  # the dataset wraps the index and seeds with all of it


class FrameTripletDataset(Dataset):
    """Three neighbouring frames (t - stride, t, t + stride) of a clip, for self-supervised depth."""

    def __init__(self, root: str | Path, split: str = "train", size: int = 256, stride: int = 1, seed: int = 0,
                 augment: bool | None = None, cache_clips: int = 0):  # fmt: skip
        self.clips = list_clips(Path(root) / split)
        if not self.clips:
            raise DaganError(f"no clips (videos or frame folders) in {Path(root) / split}")
        self.stride, self.seed, self.epoch = stride, seed, 0
        self.augment = (split == "train") if augment is None else augment
        self.reader = ClipReader(size, cache_clips)
        self.config = DataConfig(frame_shape=(size, size, 3), time_flip=False)

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws for a new epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        """``frames`` (3, 3, S, S): previous, target, next."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        clip = self.clips[index % len(self.clips)]
        length = self.reader.length(clip)
        if length < 2 * self.stride + 1:
            raise DaganError(f"clip {clip} has {length} frames; depth training needs {2 * self.stride + 1}")
        centre = int(rng.integers(self.stride, length - self.stride))
        indices = [centre - self.stride, centre, centre + self.stride]
        frames = [_to_tensor(f) for f in self.reader.frames(clip, indices)]
        if self.augment:
            if rng.random() < 0.5:
                frames = [f.flip(-1) for f in frames]
            frames = _jitter(frames, self.config, rng)
        return {"frames": torch.stack(frames), "name": clip.name, "index": centre}
