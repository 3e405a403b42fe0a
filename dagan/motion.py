"""Transfer of driving motion onto the source keypoints (relative or absolute)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import ConvexHull

from dagan.nn.common import Keypoints, inverse_2x2


def hull_area(points: np.ndarray) -> float:
    """Area of the 2-D convex hull of ``points`` (N, 2), as ``ConvexHull(...).volume`` gives it."""
    return float(ConvexHull(points).volume)


def movement_scale(kp_source: Keypoints, kp_driving_initial: Keypoints) -> float:
    """sqrt(source hull area / initial driving hull area), from the first batch item, as the original."""
    source_area = hull_area(kp_source.value[0].detach().cpu().double().numpy())
    driving_area = hull_area(kp_driving_initial.value[0].detach().cpu().double().numpy())
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
