"""Synthetic talking heads with ground truth: procedurally ray-cast 3-D heads (no graphics stack).

Each head is a set of ellipsoids (skull, nose, ears, hair cap, neck, shoulders) seen by a
perspective camera at the origin looking along +z. Eyes, brows and mouth are painted on the skull
in its own coordinates, so they move with the head; the mouth opens and the eyes blink. Shading is
Lambertian with a per-identity light, so depth shows in the image. Rendering is vectorised in torch
over all pixels and frames of a batch.

Ground truth per frame: camera-space depth (z, 0 on the background), 2-D landmarks of the face
features (pixels, x then y) and head pose (yaw, pitch, roll in degrees; translation; scale).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dagan.options import SynthOptions

#: Landmarks, in skull-local unit-sphere directions (x right, y up, z towards the camera is -z).
LANDMARK_NAMES = (
    "right_eye_outer", "right_eye_inner", "left_eye_inner", "left_eye_outer",
    "right_eye_center", "left_eye_center", "right_brow", "left_brow",
    "nose_tip", "mouth_right", "mouth_left", "mouth_top", "mouth_bottom", "chin",
    "right_ear", "left_ear",
)  # fmt: skip
EYE_Y, EYE_X, MOUTH_Y, EYE_RADIUS, MOUTH_HALF_WIDTH = 0.22, 0.33, -0.42, 0.11, 0.24


@dataclass
class Identity:
    """Everything that stays fixed for one synthetic person."""

    radii: np.ndarray  # skull radii (x, y, z)
    nose: float  # nose length
    ear: float
    hair_height: float
    skin: np.ndarray  # RGB in [0, 1]
    hair: np.ndarray
    iris: np.ndarray
    lips: np.ndarray
    shirt: np.ndarray
    background: np.ndarray  # (2, 3): top and bottom colours
    light: np.ndarray  # unit vector towards the light
    texture_frequencies: np.ndarray  # (K, 3): skin and cloth texture, fixed to the surface
    texture_phases: np.ndarray  # (K,)


def random_identity(rng: np.random.Generator) -> Identity:
    """Draw an identity: shape, skin, hair and eye colours, background and light direction."""
    skin_tone = rng.uniform(0.25, 0.95)
    skin = np.array([skin_tone, skin_tone * rng.uniform(0.7, 0.85), skin_tone * rng.uniform(0.55, 0.75)])
    light = np.array([rng.uniform(-0.7, 0.7), rng.uniform(0.1, 0.8), -1.0])
    return Identity(
        radii=np.array([rng.uniform(0.72, 0.88), rng.uniform(0.95, 1.1), rng.uniform(0.85, 0.98)]),
        nose=rng.uniform(0.16, 0.3),
        ear=rng.uniform(0.15, 0.24),
        hair_height=rng.uniform(0.2, 0.6),
        skin=skin,
        hair=rng.uniform(0.0, 0.6, 3) * rng.uniform(0.2, 1.0),
        iris=rng.uniform(0.05, 0.7, 3),
        lips=np.array([rng.uniform(0.5, 0.8), rng.uniform(0.1, 0.3), rng.uniform(0.15, 0.35)]),
        shirt=rng.uniform(0.1, 0.9, 3),
        background=rng.uniform(0.1, 0.95, (2, 3)),
        light=light / np.linalg.norm(light),
        texture_frequencies=rng.normal(0.0, 7.0, (6, 3)),
        texture_phases=rng.uniform(0, 2 * math.pi, 6),
    )


HEAD_DISTANCE = 3.0
FPS = 25  # frame rate of the written clips
FOCAL = 0.95  # focal length in units of the image size: a close-up, like a webcam
#: Amplitudes (x, y, z) of the hand-held camera's quick shifts, in head-radius units.
CAMERA_SHAKE = (0.12, 0.08, 0.6)


@dataclass
class Motion:
    """Per-frame head pose and expression, smooth in time."""

    yaw: np.ndarray  # degrees
    pitch: np.ndarray
    roll: np.ndarray
    translation: np.ndarray  # (F, 3)
    scale: np.ndarray
    mouth: np.ndarray  # 0 closed .. 1 open
    eyes: np.ndarray  # 0 shut .. 1 open


def _smooth(
    rng: np.random.Generator, frames: int, amplitude: float, hertz: tuple[float, float] = (0.1, 0.6), fps: float = 25.0
) -> np.ndarray:
    """Sum of a few sinusoids with frequencies in ``hertz``, within [-amplitude, amplitude]."""
    t = np.arange(frames) / fps
    out = np.zeros(frames)
    weights = rng.dirichlet(np.ones(3))
    for w in weights:
        out += w * np.sin(2 * math.pi * rng.uniform(*hertz) * t + rng.uniform(0, 2 * math.pi))
    return amplitude * out


def random_motion(rng: np.random.Generator, frames: int, still_head: bool = False) -> Motion:
    """Yaw within +-30, pitch +-15, roll +-10 degrees, translation with camera shake, scale, talking, blinking.

    ``still_head`` keeps the first frame's head pose and scale for the whole clip, so that only
    the camera moves (and the mouth and eyes): the static scene self-supervised depth assumes.
    """
    mouth = np.clip(0.5 + 0.5 * np.sin(2 * math.pi * rng.uniform(1.0, 3.0) * np.arange(frames) / 25.0
                                        + rng.uniform(0, 6.3)) * rng.uniform(0.6, 1.0), 0, 1)  # fmt: skip
    eyes = np.ones(frames)
    for start in rng.choice(max(frames, 1), size=max(1, frames // 40), replace=False):
        for k, v in enumerate((0.5, 0.05, 0.05, 0.5)):
            if start + k < frames:
                eyes[start + k] = v
    translation = np.stack([_smooth(rng, frames, 0.15), _smooth(rng, frames, 0.1), _smooth(rng, frames, 0.3)], axis=1)
    # A hand-held camera: quicker shifts of the whole scene. Translation between nearby frames makes
    # depth observable; sideways motion alone leaves an offset of the disparity free, and only the
    # to-and-fro (zoom-like) motion pins it, hence its larger amplitude (docs/depth.md).
    translation += np.stack([_smooth(rng, frames, a, hertz=(0.8, 2.0)) for a in CAMERA_SHAKE], axis=1)
    # Drawn in the same order either way, so a still clip shares its camera path with the moving one.
    yaw, pitch, roll = _smooth(rng, frames, 30.0), _smooth(rng, frames, 15.0), _smooth(rng, frames, 10.0)
    scale = 1.0 + _smooth(rng, frames, 0.04)
    if still_head:
        yaw, pitch, roll, scale = (np.full(frames, a[0]) for a in (yaw, pitch, roll, scale))
    return Motion(yaw=yaw, pitch=pitch, roll=roll, translation=translation, scale=scale, mouth=mouth, eyes=eyes)


def rotation_matrices(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """(F, 3, 3) head-to-camera rotations R = Rz(roll) Ry(yaw) Rx(pitch), angles in degrees."""
    y, p, r = (torch.deg2rad(a) for a in (yaw, pitch, roll))
    one, zero = torch.ones_like(y), torch.zeros_like(y)
    rx = torch.stack([one, zero, zero, zero, p.cos(), -p.sin(), zero, p.sin(), p.cos()], -1).view(-1, 3, 3)
    ry = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], -1).view(-1, 3, 3)
    rz = torch.stack([r.cos(), -r.sin(), zero, r.sin(), r.cos(), zero, zero, zero, one], -1).view(-1, 3, 3)
    return rz @ ry @ rx


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def landmark_directions() -> np.ndarray:
    """Unit directions on the skull (local frame) of each landmark, except nose tip and ears."""

    def front(x: float, y: float) -> np.ndarray:
        return _unit(np.array([x, y, -math.sqrt(max(1e-6, 1 - x * x - y * y))]))

    return np.stack(
        [
            front(-EYE_X - EYE_RADIUS, EYE_Y), front(-EYE_X + EYE_RADIUS, EYE_Y),
            front(EYE_X - EYE_RADIUS, EYE_Y), front(EYE_X + EYE_RADIUS, EYE_Y),
            front(-EYE_X, EYE_Y), front(EYE_X, EYE_Y),
            front(-EYE_X, EYE_Y + 0.17), front(EYE_X, EYE_Y + 0.17),
            front(0.0, 0.0),
            front(-MOUTH_HALF_WIDTH, MOUTH_Y), front(MOUTH_HALF_WIDTH, MOUTH_Y),
            front(0.0, MOUTH_Y + 0.05), front(0.0, MOUTH_Y - 0.05),
            front(0.0, -0.82),
            np.array([-1.0, 0.0, 0.0]), np.array([1.0, 0.0, 0.0]),
        ]
    )  # fmt: skip


def _primitives(identity: Identity) -> list[tuple[tuple[float, float, float], tuple[float, float, float], int, bool]]:
    """(centre, radii, material, turns with the head) in skull-local units; the skull comes first."""
    rx, ry, rz = (float(v) for v in identity.radii)
    ear = (0.07, identity.ear, 0.12)
    return [
        ((0.0, 0.0, 0.0), (rx, ry, rz), 0, True),  # skull: skin with painted eyes, brows, mouth
        ((0.0, -0.05 * ry, -rz * 0.93), (0.1, 0.16, identity.nose), 1, True),  # nose
        ((-rx * 0.98, 0.0, 0.05), ear, 1, True),
        ((rx * 0.98, 0.0, 0.05), ear, 1, True),
        ((0.0, ry * 0.25, rz * 0.08), (rx * 1.05, ry * 0.82 + identity.hair_height * 0.3, rz * 1.02), 2, True),
        ((0.0, -ry * 1.1, 0.1), (0.33, 0.5, 0.33), 1, False),  # neck
        ((0.0, -ry * 1.95, 0.25), (1.55, 0.62, 0.75), 3, False),  # shoulders
    ]


NOSE, HAIR = 1, 4


def render_clip(identity: Identity, motion: Motion, size: int = 256, chunk: int = 16) -> dict[str, np.ndarray]:
    """Render frames (F, S, S, 3) uint8, depth (F, S, S) float32, landmarks (F, L, 2), pose (F, 7).

    Frames are rendered ``chunk`` at a time: larger batches of per-pixel tensors fall out of cache.
    """
    total = len(motion.yaw)
    if total > chunk:
        parts = [
            _render(identity, _slice_motion(motion, slice(start, start + chunk)), size)
            for start in range(0, total, chunk)
        ]
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    return _render(identity, motion, size)


def _slice_motion(motion: Motion, frames: slice) -> Motion:
    return Motion(**{f.name: getattr(motion, f.name)[frames] for f in dataclasses.fields(Motion)})


def _render(identity: Identity, motion: Motion, size: int) -> dict[str, np.ndarray]:
    frames = len(motion.yaw)

    def f(a):
        return torch.as_tensor(np.asarray(a), dtype=torch.float32)

    head_rot = rotation_matrices(f(motion.yaw), f(motion.pitch), f(motion.roll))  # (F, 3, 3)
    centre = f(motion.translation) + torch.tensor([0.0, 0.15, HEAD_DISTANCE])  # skull centre, camera space
    scale = f(motion.scale).view(-1, 1)
    still = torch.eye(3).expand(frames, 3, 3)

    pixel = (torch.arange(size, dtype=torch.float32) + 0.5 - size / 2) / (FOCAL * size)
    ys, xs = torch.meshgrid(-pixel, pixel, indexing="ij")
    # Ray directions as separate contiguous components (x, y, z = 1), shape (1, P) each.
    rays = (xs.reshape(1, -1), ys.reshape(1, -1), torch.ones(1, size * size))
    # The same rays in the head frame (R^T d), computed once: each primitive is then a rescaling.
    rays_head = tuple(sum(head_rot[:, j, i, None] * rays[j] for j in range(3)) for i in range(3))
    prims = _primitives(identity)
    origins, axes_all = [], []
    best_t = torch.full((frames, size * size), float("inf"))
    best_prim = torch.full((frames, size * size), -1, dtype=torch.long)
    for index, (pos, radii, _, turn) in enumerate(prims):
        rot = head_rot if turn else still
        world_centre = centre + torch.einsum("fij,j->fi", rot, f(pos)) * scale
        axes = f(radii) * scale  # (F, 3)
        origin = -torch.einsum("fji,fj->fi", rot, world_centre)  # camera origin in the primitive frame
        origins.append(origin)
        axes_all.append(axes)
        d = rays_head if turn else rays
        inv2 = (1 / axes**2).unsqueeze(-1)  # (F, 3, 1)
        oi = origin.unsqueeze(-1) * inv2
        a = d[0] * d[0] * inv2[:, 0] + d[1] * d[1] * inv2[:, 1] + d[2] * d[2] * inv2[:, 2]
        b = 2 * (d[0] * oi[:, 0] + d[1] * oi[:, 1] + d[2] * oi[:, 2])
        c = (origin * oi[..., 0]).sum(-1, keepdim=True) - 1
        disc = b * b - 4 * a * c
        t = (-b - disc.clamp_min(0).sqrt()) / (2 * a)
        hit = (disc > 0) & (t > 0) & (t < best_t)
        if index == HAIR:  # only the cap over the top and the back of the head
            y = (origin[:, 1:2] + t * d[1]) / axes[:, 1:2]
            z = (origin[:, 2:3] + t * d[2]) / axes[:, 2:3]
            hit &= (y > 0.42) | (z > 0.3)
        best_t = torch.where(hit, t, best_t)
        best_prim = torch.where(hit, index, best_prim)

    # Surface point (unit-sphere coordinates of its primitive) and world normal of each pixel.
    prim = best_prim.clamp_min(0)
    turned = torch.tensor([turn for *_, turn in prims])[prim]
    t = best_t.clamp(max=1e3)
    origin = torch.stack(origins, 1)  # (F, n, 3)
    axes = torch.stack(axes_all, 1)
    local, gradient = [], []
    for i in range(3):
        o_i = torch.gather(origin[..., i], 1, prim)
        ax_i = torch.gather(axes[..., i], 1, prim)
        d_i = torch.where(turned, rays_head[i], rays[i])
        local.append((o_i + t * d_i) / ax_i)
        gradient.append(local[-1] / ax_i)
    best_local = torch.stack(local, -1)
    rotated = [sum(head_rot[:, i, j, None] * gradient[j] for j in range(3)) for i in range(3)]
    best_normal = torch.stack([torch.where(turned, rotated[i], gradient[i]) for i in range(3)], -1)

    foreground = best_prim >= 0
    depth = torch.where(foreground, best_t, torch.zeros_like(best_t))  # rays have z = 1, so t is camera z
    normal = best_normal / best_normal.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    shade = 0.5 + 0.6 * (normal @ f(identity.light)).clamp_min(0)
    # Surface texture (pores, freckles, cloth weave at this scale): it moves with the surface, so
    # frames agree photometrically where plain shading alone would be ambiguous.
    freq = f(identity.texture_frequencies)  # written out: matmuls with an inner size of 3 are slow on CPU
    waves = torch.sin(
        best_local[..., 0:1] * freq[:, 0]
        + best_local[..., 1:2] * freq[:, 1]
        + best_local[..., 2:3] * freq[:, 2]
        + f(identity.texture_phases)
    )
    texture = 1 + 0.2 * torch.tanh(waves.sum(-1) / 2)
    palette = torch.stack([f(identity.skin), f(identity.skin) * 0.92, f(identity.hair), f(identity.shirt)])
    materials = torch.tensor([material for _, _, material, _ in prims])
    albedo = palette[materials[best_prim.clamp_min(0)]] * texture.unsqueeze(-1)
    albedo = _paint_face(albedo, best_prim == 0, best_local, identity, motion)

    colour = albedo * shade.unsqueeze(-1)
    rows = torch.linspace(0, 1, size).repeat_interleave(size).view(1, -1, 1)
    background = f(identity.background[0]) * (1 - rows) + f(identity.background[1]) * rows
    image = torch.where(foreground.unsqueeze(-1), colour, background).clamp(0, 1)

    landmarks = _project_landmarks(identity, head_rot, centre, scale, size)
    pose = np.concatenate(
        [np.stack([motion.yaw, motion.pitch, motion.roll], 1), motion.translation, motion.scale[:, None]], axis=1
    )
    return {
        "frames": (image.view(frames, size, size, 3).numpy() * 255 + 0.5).astype(np.uint8),
        "depth": depth.view(frames, size, size).numpy().astype(np.float32),
        "head_mask": ((best_prim >= 0) & (best_prim <= HAIR)).view(frames, size, size).numpy(),
        "face_mask": (((best_prim == 0) & (best_local[..., 2] < 0)) | (best_prim == NOSE))
        .view(frames, size, size)
        .numpy(),
        "landmarks": landmarks.astype(np.float32),
        "pose": pose.astype(np.float32),
    }


def _paint_face(
    albedo: torch.Tensor, skull: torch.Tensor, local: torch.Tensor, identity: Identity, motion: Motion
) -> torch.Tensor:
    """Eyes (with blinking lids), irises, brows and an opening mouth, painted on the skull."""
    lx, ly = local[..., 0], local[..., 1]
    front = skull & (local[..., 2] < 0)
    eyes_open = torch.as_tensor(motion.eyes, dtype=torch.float32).view(-1, 1).clamp_min(0.05)
    mouth_open = torch.as_tensor(motion.mouth, dtype=torch.float32).view(-1, 1)
    # Paint a label per pixel (later labels win), then look colours up once.
    labels = torch.zeros(lx.shape, dtype=torch.long)
    for side in (-1.0, 1.0):
        dx, dy = lx - side * EYE_X, ly - EYE_Y
        ellipse = (dx / EYE_RADIUS) ** 2
        socket = front & (ellipse + (dy / (EYE_RADIUS * 0.6)) ** 2 < 1)
        eye = socket & (ellipse + (dy / (EYE_RADIUS * 0.6 * eyes_open)) ** 2 < 1)
        labels = torch.where(socket, 1, labels)  # eyelid
        labels = torch.where(eye, 2, labels)  # white of the eye
        labels = torch.where(eye & (dx**2 + dy**2 < (EYE_RADIUS * 0.5) ** 2), 3, labels)  # iris
        labels = torch.where(
            front & ((dx / (EYE_RADIUS * 1.1)) ** 2 + ((dy - 0.17) / 0.025) ** 2 < 1), 4, labels
        )  # brow
    dy = ly - MOUTH_Y
    half_height = 0.02 + 0.09 * mouth_open
    labels = torch.where(
        front & ((lx / MOUTH_HALF_WIDTH) ** 2 + (dy / (half_height + 0.035)) ** 2 < 1), 5, labels
    )  # lips
    inner = front & ((lx / (MOUTH_HALF_WIDTH * 0.85)) ** 2 + (dy / half_height) ** 2 < 1) & (mouth_open > 0.08)
    labels = torch.where(inner, 6, labels)
    labels = torch.where(inner & (dy > half_height * 0.45), 7, labels)  # upper teeth
    colours = torch.as_tensor(
        np.stack(
            [
                np.zeros(3),
                identity.skin * 0.8,
                (0.95, 0.95, 0.92),
                identity.iris,
                identity.hair * 0.7,
                identity.lips,
                (0.18, 0.04, 0.05),
                (0.92, 0.9, 0.85),
            ]
        ),
        dtype=torch.float32,
    )
    return torch.where((labels > 0).unsqueeze(-1), colours[labels], albedo)


def _project_landmarks(
    identity: Identity, rot: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor, size: int
) -> np.ndarray:
    radii = torch.as_tensor(identity.radii, dtype=torch.float32)
    points = torch.as_tensor(landmark_directions(), dtype=torch.float32) * radii
    rx, ry, rz = (float(v) for v in identity.radii)
    points[LANDMARK_NAMES.index("nose_tip")] = torch.tensor([0.0, -0.05 * ry, -rz * 0.93 - identity.nose])
    points[LANDMARK_NAMES.index("right_ear")] = torch.tensor([-rx * 0.98 - 0.07, 0.0, 0.05])
    points[LANDMARK_NAMES.index("left_ear")] = torch.tensor([rx * 0.98 + 0.07, 0.0, 0.05])
    camera = centre.unsqueeze(1) + torch.einsum("fij,lj->fli", rot, points) * scale.unsqueeze(1)
    x = camera[..., 0] / camera[..., 2] * FOCAL * size + size / 2
    y = -camera[..., 1] / camera[..., 2] * FOCAL * size + size / 2
    return torch.stack([x, y], -1).numpy()


@dataclass
class SynthReport:
    """What ``write_dataset`` produced."""

    clips: int
    frames: int
    seconds: float


def intrinsics(size: int) -> np.ndarray:
    """The 3x3 pinhole camera matrix of the renderer, in pixels."""
    focal = FOCAL * size
    return np.array([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])


def write_clip_mp4(path: Path, frames: np.ndarray) -> None:
    """Write rendered frames as a near-lossless 25 fps H.264 clip, atomically."""
    from dagan.io.video import Mp4Writer

    with Mp4Writer(path, Fraction(FPS), crf=12) as writer:
        for frame in frames:
            writer.write(frame)


def clip_name(identity: int, clip: int) -> str:
    """VoxCeleb-style clip name: ``id0003#clip01``."""
    return f"id{identity:04d}#clip{clip:02d}"


def write_dataset(
    out: str | Path,
    identities: int = SynthOptions.identities,
    clips_per_identity: int = SynthOptions.clips_per_identity,
    frames: int = SynthOptions.frames,
    size: int = SynthOptions.size,
    seed: int = SynthOptions.seed,
    test_fraction: float = 0.2,
    frame_format: str = SynthOptions.frame_format,
    still_head: bool = SynthOptions.still_head,
    quiet: bool = SynthOptions.quiet,
) -> SynthReport:
    """Render a ``train/`` + ``test/`` dataset with disjoint identities, plus ground truth per clip.

    Every clip ``NAME.mp4`` (or folder ``NAME/`` of PNGs) has ``NAME.npz`` beside it holding
    ``depth`` (F, S, S) float16 camera z (0 = background), ``landmarks`` (F, L, 2) pixels,
    ``pose`` (F, 7) = yaw, pitch, roll (degrees), tx, ty, tz, scale, ``intrinsics`` (3, 3) and
    ``head_mask`` (F, S, S): the pixels of the head (skull, nose, ears, hair), not neck or shoulders,
    and ``face_mask`` (F, S, S): the face alone (the front half of the skull, and the nose).
    """
    from dagan.io.atomic import atomic_output, check_writable_directory
    from dagan.io.image import write_png
    from dagan.io.streaming import BackgroundConsumer

    started = time.perf_counter()
    out = Path(out)
    n_test = max(1, round(identities * test_fraction)) if identities > 1 else 0
    split = {i: ("test" if i >= identities - n_test else "train") for i in range(identities)}
    for part in set(split.values()):
        check_writable_directory(out / part)
    total = identities * clips_per_identity

    def save(item: tuple[Path, dict[str, np.ndarray]]) -> None:
        stem, clip = item
        if frame_format == "mp4":
            write_clip_mp4(stem.with_suffix(".mp4"), clip["frames"])
        else:
            stem.mkdir(exist_ok=True)
            for j, frame in enumerate(clip["frames"]):
                write_png(stem / f"{j:04d}.png", frame)
        with atomic_output(stem.with_suffix(".npz")) as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(
                    handle,
                    depth=clip["depth"].astype(np.float16),
                    head_mask=clip["head_mask"],
                    face_mask=clip["face_mask"],
                    landmarks=clip["landmarks"],
                    pose=clip["pose"],
                    intrinsics=intrinsics(size),
                    landmark_names=np.array(LANDMARK_NAMES),
                )

    # Encoding and compression overlap with rendering the next clip.
    writer = BackgroundConsumer(save, size=2)
    done = 0
    with tqdm(total=total * frames, unit="frame", disable=quiet, desc="synth", file=sys.stderr) as bar:
        for i in range(identities):
            identity = random_identity(np.random.default_rng([seed, i]))
            for k in range(clips_per_identity):
                motion = random_motion(np.random.default_rng([seed, i, k + 1]), frames, still_head)
                writer.put((out / split[i] / clip_name(i, k), render_clip(identity, motion, size)))
                done += 1
                bar.update(frames)
        writer.close()
    meta = {
        "seed": seed,
        "identities": identities,
        "clips_per_identity": clips_per_identity,
        "frames": frames,
        "size": size,
        "still_head": still_head,
        "test_identities": [clip_name(i, 0).split("#")[0] for i in range(identities) if split[i] == "test"],
        "landmarks": list(LANDMARK_NAMES),
        "intrinsics": intrinsics(size).tolist(),
        "fps": FPS,
    }
    with atomic_output(out / "synth.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    return SynthReport(done, done * frames, time.perf_counter() - started)
