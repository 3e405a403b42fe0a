"""A rigid, richly textured dome seen by a translating camera, in ``dagan synth``'s layout.

The easiest case for self-supervised depth: the scene never moves, every pixel has texture, the
camera is known (focal 0.95 image widths, centred) and translates along all three axes. A
training run that does not learn depth here is broken, whatever it does on talking heads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

FOCAL = 0.95
INTRINSICS = (FOCAL, FOCAL, 0.5, 0.5)
#: The texture covers world x, y in [-EXTENT, EXTENT].
EXTENT = 2.0


def dome_depth(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """World z of the surface: a plane at 2 with a bump reaching 0.7 towards the camera."""
    return 2.0 - 0.7 * np.exp(-(x**2 + y**2) / (2 * 0.35**2))


def random_texture(rng: np.random.Generator, size: int = 256) -> torch.Tensor:
    """(1, 3, size, size) colour noise summed over five octaves, in [0, 1]."""
    texture = torch.zeros(1, 3, size, size)
    for cells in (4, 8, 16, 32, 64):
        octave = torch.from_numpy(rng.random((1, 3, cells, cells))).float()
        texture += F.interpolate(octave, size=(size, size), mode="bicubic", align_corners=True)
    return (texture - texture.amin()) / (texture.amax() - texture.amin())


def render(texture: torch.Tensor, camera: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The frame (uint8 HxWx3) and its depth (float32 HxW) seen from ``camera`` (x, y, z), looking along +z."""
    focal = FOCAL * size
    u, v = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    ray_x, ray_y = (u - size / 2) / focal, (v - size / 2) / focal
    # Fixed-point iteration on the ray parameter; it contracts because the dome's slope is gentle.
    depth = np.full_like(ray_x, 2.0 - camera[2])
    for _ in range(40):
        depth = dome_depth(camera[0] + depth * ray_x, camera[1] + depth * ray_y) - camera[2]
    world = np.stack([camera[0] + depth * ray_x, camera[1] + depth * ray_y], -1) / EXTENT
    grid = torch.from_numpy(world[None]).float()
    image = F.grid_sample(texture, grid, mode="bilinear", align_corners=True, padding_mode="reflection")[0]
    return (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), depth.astype(np.float32)


def write_split(root: Path, split: str, clips: int, frames: int, size: int, seed: int) -> None:
    """``root/split/clipNNN/`` PNG frames and ``root/split/clipNNN.npz`` with their ``depth``."""
    rng = np.random.default_rng(seed)
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(clips):
        texture = random_texture(rng)
        start, velocity = rng.uniform(-0.15, 0.15, 3), rng.uniform(-0.04, 0.04, 3)
        clip = folder / f"clip{index:03d}"
        clip.mkdir()
        depths = []
        for t in range(frames):
            image, depth = render(texture, start + t * velocity, size)
            Image.fromarray(image).save(clip / f"{t:04d}.png")
            depths.append(depth)
        np.savez_compressed(clip.with_suffix(".npz"), depth=np.stack(depths))


def write_rigid_scene(root: Path, size: int = 64, seed: int = 1) -> Path:
    """24 training and 4 test clips of 8 frames; each clip has its own texture and camera path."""
    write_split(root, "train", 24, 8, size, seed)
    write_split(root, "test", 4, 8, size, seed + 1)
    return root
