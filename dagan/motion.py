"""Transfer of driving motion onto the source keypoints (relative or absolute)."""

from __future__ import annotations

import numpy as np
import torch

from dagan.nn.common import Keypoints, inverse_2x2


def _half_hull(points: np.ndarray) -> list[np.ndarray]:
    hull: list[np.ndarray] = []
    for point in points:
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], point) <= 0:
            hull.pop()
        hull.append(point)
    return hull


def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))


def hull_area(points: np.ndarray) -> float:
    """Area of the 2-D convex hull of ``points`` (N, 2): ``scipy.spatial.ConvexHull(points).volume``; 0 if flat.

    Andrew's monotone chain and the shoelace formula, in float64: scipy (Qhull) would cost 20 MB
    of resident memory in every animation for one call per video.
    """
    ordered = np.unique(np.asarray(points, dtype=np.float64), axis=0)  # sorted by x, then y
    if len(ordered) < 3:
        return 0.0
    hull = np.array(_half_hull(ordered)[:-1] + _half_hull(ordered[::-1])[:-1])
    x, y = hull[:, 0], hull[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def movement_scale(kp_source: Keypoints, kp_driving_initial: Keypoints) -> float:
    """sqrt(source hull area / initial driving hull area), from the first batch item, as the original."""
    source_area = hull_area(kp_source.value[0].detach().cpu().double().numpy())
    driving_area = hull_area(kp_driving_initial.value[0].detach().cpu().double().numpy())
    if source_area == 0 or driving_area == 0:  # keypoints on a line: no area to compare
        return 1.0
    return float(np.sqrt(source_area) / np.sqrt(driving_area))


def transfer_motion(
    kp_source: Keypoints,
    kp_driving: Keypoints,
    kp_driving_initial: Keypoints,
    relative: bool = True,
    scale: float = 1.0,
) -> Keypoints:
    """Keypoints that animate the source: relative to the initial driving frame, or absolute.

    ``scale`` multiplies the relative movement; ``movement_scale`` gives the adaptive one.
    """
    if not relative:
        return kp_driving
    value = (kp_driving.value - kp_driving_initial.value) * scale + kp_source.value
    jacobian = kp_driving.jacobian
    if jacobian is not None:
        change = torch.matmul(jacobian, inverse_2x2(kp_driving_initial.jacobian))
        jacobian = torch.matmul(change, kp_source.jacobian)
    return Keypoints(value, jacobian)


#: The One-Euro filter's speed coefficient (per unit of keypoint speed, in keypoint units a second):
#: fast motion raises the cutoff, so the filter follows a turning head and smooths a still one.
SMOOTH_BETA = 2.0
#: Cutoff of the speed estimate itself, in Hz (Casiez et al.'s usual choice).
SMOOTH_SPEED_CUTOFF = 1.0


class KeypointSmoother:
    """A causal One-Euro filter (Casiez et al., CHI 2012) over the driving keypoints and jacobians.

    ``strength`` S sets the time constant of the filter for a still keypoint, in frames: its
    minimum cutoff is fps / (2 pi S). Each keypoint has its own adaptive cutoff, from its own speed;
    its jacobian is filtered with the same weight as its position. S = 0 leaves the motion as it is.
    """

    def __init__(self, strength: float, fps: float = 25.0, beta: float = SMOOTH_BETA):
        if not (np.isfinite(strength) and strength >= 0):
            raise ValueError(f"--smooth must be a finite number of frames, 0 or more; got {strength}")
        self.strength, self.rate, self.beta = strength, float(fps), beta
        self._value: torch.Tensor | None = None
        self._jacobian: torch.Tensor | None = None
        self._speed: torch.Tensor | None = None

    def _alpha(self, cutoff: torch.Tensor | float) -> torch.Tensor | float:
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau * self.rate)

    def __call__(self, keypoints: Keypoints) -> Keypoints:
        """Filter a (B, K, 2) batch of consecutive frames, in order, continuing from the last call."""
        if self.strength == 0:
            return keypoints
        values, jacobians = [], []
        for i in range(keypoints.value.shape[0]):
            value = keypoints.value[i]
            jacobian = None if keypoints.jacobian is None else keypoints.jacobian[i]
            if self._value is None:
                self._value, self._jacobian = value, jacobian
                self._speed = torch.zeros(value.shape[0], dtype=value.dtype, device=value.device)
            else:
                speed = torch.linalg.vector_norm(value - self._value, dim=-1) * self.rate
                self._speed = self._speed + self._alpha(SMOOTH_SPEED_CUTOFF) * (speed - self._speed)
                cutoff = self.rate / (2 * np.pi * self.strength) + self.beta * self._speed
                weight = self._alpha(cutoff)[:, None]
                self._value = self._value + weight * (value - self._value)
                if jacobian is not None:
                    self._jacobian = self._jacobian + weight[..., None] * (jacobian - self._jacobian)
            values.append(self._value)
            jacobians.append(self._jacobian)
        jacobian = None if keypoints.jacobian is None else torch.stack(jacobians)
        return Keypoints(torch.stack(values), jacobian)
