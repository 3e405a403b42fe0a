"""Face toolkit on dlib (``pip install 'dagan[face]'``): detection, 68 landmarks, identity embeddings, head pose.

dlib-bin and face-recognition-models ship their weights on PyPI, so everything here works offline.
Detection is dlib's HOG detector by default, or its CNN (MMOD) detector; landmarks are the iBUG
68-point shape predictor; identities are dlib's 128-d ResNet embedding, computed from dlib's face
chip by the same network in torch (``dagan.nn.dlib_face_resnet``: batched, about 20x faster than
dlib's own, equal to float rounding). Head pose is solved from six landmarks against a generic 3-D
face (not img2pose).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from dagan.errors import DaganError, first_line
from dagan.io.dlib_net import read_dlib_face_resnet
from dagan.io.image import to_uint8
from dagan.nn.dlib_face_resnet import CHIP_SIZE, DlibFaceResNet, chip_input

Detector = Literal["hog", "cnn"]

#: A generic head in millimetres-like units (x right, y up, z towards the camera), for the landmarks
#: nose tip (30), chin (8), outer eye corners (36, 45) and mouth corners (48, 54).
GENERIC_FACE_POINTS = np.array(
    [[0.0, 0.0, 0.0], [0.0, -330.0, -65.0], [-225.0, 170.0, -135.0], [225.0, 170.0, -135.0],
     [-150.0, -150.0, -125.0], [150.0, -150.0, -125.0]]
)  # fmt: skip
POSE_LANDMARKS = [30, 8, 36, 45, 48, 54]


def _model_folder() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.submodule_search_locations is None:
        raise DaganError(
            "the face toolkit (dagan crop, animate --crop, face metrics) needs dlib's models: "
            "pip install 'dagan[face]' (dlib-bin, face-recognition-models)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@cache
def _dlib():
    try:
        import dlib
    except ImportError:
        raise DaganError(
            "the face toolkit (dagan crop, animate --crop, face metrics) needs dlib: "
            "pip install 'dagan[face]' (dlib-bin, face-recognition-models)"
        ) from None
    return dlib


@cache
def _detector(detector: Detector):
    dlib = _dlib()
    if detector == "hog":
        return dlib.get_frontal_face_detector()
    return dlib.cnn_face_detection_model_v1(str(_model_folder() / "mmod_human_face_detector.dat"))


@cache
def _shape_predictor():
    return _dlib().shape_predictor(str(_model_folder() / "shape_predictor_68_face_landmarks.dat"))


def identity_model_path() -> Path:
    """dlib's face recognition network file, as face-recognition-models ships it."""
    return _model_folder() / "dlib_face_recognition_resnet_model_v1.dat"


@cache
def _identity_network() -> DlibFaceResNet:
    # Loaded only when an embedding is asked for.
    return read_dlib_face_resnet(identity_model_path())


def load_identity_model() -> None:
    """Load the identity network now rather than at the first embedding (a missing model fails here)."""
    _identity_network()


#: The margin around the landmarks' face in dlib's aligned chip, as a fraction of the face.
CHIP_PADDING = 0.25


@dataclass
class Face:
    """The largest face of an image: its box (left, top, right, bottom), 68 landmarks (x, y), aligned
    150x150 chip and, once computed, its 128-d identity embedding."""

    box: tuple[int, int, int, int]
    landmarks: np.ndarray  # (68, 2) pixels
    chip: np.ndarray  # (150, 150, 3) uint8 RGB, dlib's alignment
    embedding: np.ndarray | None = None  # (128,)


@torch.inference_mode()
def embed_faces(faces: list[Face]) -> None:
    """Fill in the embedding of each face that has none, all in one batch through the identity network."""
    missing = list({id(face): face for face in faces if face.embedding is None}.values())  # a source repeats
    if not missing:
        return
    network = _identity_network()
    chips = torch.from_numpy(np.stack([face.chip for face in missing]))
    for face, embedding in zip(missing, network(chip_input(chips)).double().numpy(), strict=True):
        face.embedding = embedding


def _rgb_pixels(image: np.ndarray) -> np.ndarray:
    """Contiguous uint8 RGB (H, W, 3), what dlib takes, from a frame or pixels with or without alpha."""
    if image.ndim != 3 or image.shape[2] < 3:
        raise DaganError(f"face detection needs an RGB image, got an array of shape {image.shape}")
    return np.ascontiguousarray((image if image.dtype == np.uint8 else to_uint8(image))[..., :3])


class FaceAnalyzer:
    """Detect the largest face of RGB images and describe it.

    ``upsample`` 0 finds faces of about 80 pixels and more, which talking-head crops always are;
    each extra level doubles the image before detection (4x the time) to find smaller ones.
    """

    def __init__(self, detector: Detector = "hog", upsample: int = 0):
        self.detector = detector
        self.upsample = upsample
        self._find = _detector(detector)
        self._shape = _shape_predictor()

    def find_boxes(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Every face box (left, top, right, bottom) of an RGB image, largest first."""
        pixels = _rgb_pixels(image)
        try:
            found = self._find(pixels, self.upsample)
        except RuntimeError as exc:  # dlib's own checks (image too small for the CNN, odd layouts)
            raise DaganError(f"face detection failed on a {pixels.shape[1]}x{pixels.shape[0]} image ({exc})") from exc
        rects = [d.rect for d in found] if self.detector == "cnn" else list(found)
        rects.sort(key=lambda r: -r.width() * r.height())
        return [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]

    def landmarks(self, image: np.ndarray, box: Iterable[float]) -> np.ndarray:
        """The 68 landmarks (x, y pixels) of the face in ``box`` (left, top, right, bottom) of an RGB image."""
        pixels = _rgb_pixels(image)
        left, top, right, bottom = (int(round(v)) for v in box)
        shape = self._shape(pixels, _dlib().rectangle(left, top, right, bottom))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def analyze(self, image: np.ndarray, embed: bool = True) -> Face | None:
        """The largest face of an RGB image ([0, 1] float or uint8), or None when none is found.

        ``embed=False`` leaves the embedding to ``embed_faces`` (batched, or never when only
        landmarks are needed); it also keeps torch out of forked workers.
        """
        pixels = _rgb_pixels(image)
        found = self._find(pixels, self.upsample)
        rects = [d.rect for d in found] if self.detector == "cnn" else list(found)
        if not rects:
            return None
        rect = max(rects, key=lambda r: r.width() * r.height())
        shape = self._shape(pixels, rect)
        landmarks = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        chip = _dlib().get_face_chip(pixels, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
        face = Face((rect.left(), rect.top(), rect.right(), rect.bottom()), landmarks, chip)
        if embed:
            embed_faces([face])
        return face


def head_pose(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """(pitch, yaw, roll) in degrees from 68 landmarks: a pinhole camera with focal = width, least squares."""
    image_points = landmarks[POSE_LANDMARKS]
    focal, centre = float(width), np.array([width / 2, height / 2])

    # Model axes (y up, z towards the camera) to camera axes (y down, z forwards).
    model = GENERIC_FACE_POINTS * np.array([1.0, -1.0, -1.0])

    def residuals(params: np.ndarray) -> np.ndarray:
        camera = Rotation.from_rotvec(params[:3]).apply(model) + params[3:]
        return (camera[:, :2] * focal / camera[:, 2:3] + centre - image_points).ravel()

    depth = focal * 450.0 / max(np.ptp(image_points[:, 0]), 1.0)  # the model's eye span over the image's
    start = np.array([0.0, 0.0, 0.0, 0.0, 0.0, depth])
    solution = least_squares(residuals, start, method="lm")
    pitch, yaw, roll = Rotation.from_rotvec(solution.x[:3]).as_euler("xyz", degrees=True)
    return np.array([pitch, yaw, roll])


def normalized_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks centred on their mean and scaled by their convex hull's square root area (best-frame search)."""
    from scipy.spatial import ConvexHull

    centred = landmarks - landmarks.mean(axis=0)
    return centred / np.sqrt(ConvexHull(landmarks).volume)


def best_matching_frame(source: np.ndarray, frames: Iterable[np.ndarray], analyzer: FaceAnalyzer | None = None) -> int:
    """Index of the frame whose normalised landmarks are closest (squared distance) to the source's.

    This is how the original's ``--find_best_frame`` chooses where relative motion starts; frames
    without a face are passed over.
    """
    analyzer = analyzer or FaceAnalyzer()
    source_face = analyzer.analyze(source, embed=False)
    if source_face is None:
        raise DaganError("--find-best-frame: no face found in the source image")
    reference = normalized_landmarks(source_face.landmarks)
    best, best_distance = None, np.inf
    for index, frame in enumerate(frames):
        face = analyzer.analyze(frame, embed=False)
        if face is None:
            continue
        distance = float(np.sum((normalized_landmarks(face.landmarks) - reference) ** 2))
        if distance < best_distance:
            best, best_distance = index, distance
    if best is None:
        raise DaganError("--find-best-frame: no face found in any driving frame")
    return best


#: How far above the brows the head mask reaches, as a fraction of the brow-to-chin height: the
#: forehead and the hair above it (a reflection of the jaw across the brow line at 1.0).
HAIR_HEIGHT = 0.8
#: The face-and-hair outline is grown by this fraction of the face size before it is feathered:
#: room for the head to move in the animation before the still photo shows through it.
MASK_GROWTH = 0.08


def head_mask(landmarks: np.ndarray, side: int, feather: float) -> np.ndarray:
    """A soft mask (side, side) float32 in [0, 1] of the face and hair of ``landmarks`` (68, 2) in a square crop.

    The outline is the jaw line and the jaw reflected above the brows (``HAIR_HEIGHT``). The mask
    is a Gaussian edge (``feather`` face sizes wide) on the distance to that outline, placed
    ``MASK_GROWTH`` face sizes plus two feathers outside it, so the whole outline is at 0.98 or
    more: the feather blends the background, never the face. It falls to zero before the crop's
    edges, so a pasted crop has no box edge anywhere.
    """
    from PIL import Image, ImageDraw
    from scipy.ndimage import distance_transform_edt
    from scipy.spatial import ConvexHull, QhullError
    from scipy.special import erfc

    jaw, chin, brows = landmarks[0:17], landmarks[8], landmarks[17:27].mean(axis=0)
    height = float(np.linalg.norm(brows - chin))
    up = (brows - chin) / max(height, 1e-6)
    below_brows = ((brows - jaw) @ up)[:, None]
    top = jaw + (1.0 + HAIR_HEIGHT) * below_brows * up
    outline = np.concatenate([jaw, top, landmarks[17:27]])
    try:
        hull = outline[ConvexHull(outline).vertices]
    except (QhullError, ValueError) as exc:  # every landmark on one line: no face outline to mask
        raise DaganError(f"the face's landmarks do not outline a face ({first_line(exc)})") from exc
    canvas = Image.new("L", (side, side), 0)
    ImageDraw.Draw(canvas).polygon([tuple(point) for point in hull], fill=1)
    inside = np.asarray(canvas, dtype=bool)
    # Signed distance to the outline, positive outside it.
    distance = distance_transform_edt(~inside) - distance_transform_edt(inside)
    size = max(height, float(np.linalg.norm(jaw[16] - jaw[0])), 1.0)
    sigma = feather * size
    edge = MASK_GROWTH * size + 2.0 * sigma
    if sigma > 0:
        mask = 0.5 * erfc((distance - edge) / (sigma * np.sqrt(2.0)))
    else:
        mask = (distance <= edge).astype(np.float64)
    # A ramp to zero over the last 2 sigma (at least 2 pixels) inside the crop: nothing reaches its edge.
    ramp = np.minimum(np.arange(side) + 0.5, side - np.arange(side) - 0.5) / max(2.0 * sigma, 2.0)
    window = np.clip(ramp, 0.0, 1.0)
    window = window * window * (3.0 - 2.0 * window)
    return np.clip(mask * window[:, None] * window[None, :], 0.0, 1.0).astype(np.float32)
