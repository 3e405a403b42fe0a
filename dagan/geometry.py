"""Camera geometry for self-supervised depth: disparity to depth, rotations, rigid motion, projection.

Pure tensor maths with no I/O, shared by depth training (``pipelines/depth_train.py``), depth
inference (``pipelines/depth.py``) and their tests. Intrinsics are pinhole matrices in pixels;
``intrinsics_from_fractions`` makes one from fx, fy, cx, cy given as fractions of the image size.
"""

from __future__ import annotations

import torch

#: The depth range the sigmoid disparity maps to (monodepth2's).
MIN_DEPTH, MAX_DEPTH = 0.1, 100.0


def disp_to_depth(disp: torch.Tensor, min_depth: float = MIN_DEPTH, max_depth: float = MAX_DEPTH) -> torch.Tensor:
    """Sigmoid disparity to depth in [min_depth, max_depth]."""
    min_disp, max_disp = 1 / max_depth, 1 / min_depth
    return 1 / (min_disp + (max_disp - min_disp) * disp)


def axisangle_to_matrix(axisangle: torch.Tensor) -> torch.Tensor:
    """(B, 3) axis-angle vectors to (B, 3, 3) rotation matrices (Rodrigues)."""
    angle = axisangle.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    axis = axisangle / angle
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=axisangle.dtype, device=axisangle.device).expand_as(skew)
    s, c = angle.sin().unsqueeze(-1), angle.cos().unsqueeze(-1)
    return eye + s * skew + (1 - c) * (skew @ skew)


def pose_matrix(axisangle: torch.Tensor, translation: torch.Tensor, invert: bool = False) -> torch.Tensor:
    """(B, 4, 4) rigid transform x -> R x + t, or its inverse."""
    rotation = axisangle_to_matrix(axisangle)
    if invert:
        rotation = rotation.transpose(1, 2)
        translation = -(rotation @ translation.unsqueeze(-1)).squeeze(-1)
    out = torch.eye(4, dtype=rotation.dtype, device=rotation.device).repeat(rotation.shape[0], 1, 1)
    out[:, :3, :3] = rotation
    out[:, :3, 3] = translation
    return out


def pixel_grid(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """Homogeneous pixel centres (3, H*W): x, y, 1."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=like.dtype, device=like.device),
        torch.arange(width, dtype=like.dtype, device=like.device),
        indexing="ij",
    )
    return torch.stack([xs.reshape(-1), ys.reshape(-1), torch.ones_like(xs).reshape(-1)])


def intrinsics_from_fractions(
    fractions: tuple[float, float, float, float], height: int, width: int, like: torch.Tensor
) -> torch.Tensor:
    """(1, 3, 3) pinhole matrix in pixels from fx, fy, cx, cy given as fractions of the image size."""
    fx, fy, cx, cy = fractions
    k = [[fx * width, 0.0, cx * width], [0.0, fy * height, cy * height], [0.0, 0.0, 1.0]]
    return torch.tensor(k, dtype=like.dtype, device=like.device).unsqueeze(0)


def backproject(depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Camera-space points (B, 3, H*W) of each pixel of a (B, 1, H, W) depth map."""
    b, _, h, w = depth.shape
    rays = torch.linalg.inv(intrinsics) @ pixel_grid(h, w, depth).unsqueeze(0)
    return rays * depth.view(b, 1, -1)


def project(
    points: torch.Tensor, intrinsics: torch.Tensor, transform: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Move (B, 3, N) points by ``transform`` and project them: grid_sample coordinates (B, H, W, 2)."""
    moved = transform[:, :3, :3] @ points + transform[:, :3, 3:]
    pixels = intrinsics @ moved
    xy = pixels[:, :2] / pixels[:, 2:3].clamp_min(1e-7)
    x = xy[:, 0] / (width - 1) * 2 - 1
    y = xy[:, 1] / (height - 1) * 2 - 1
    return torch.stack([x, y], -1).view(-1, height, width, 2)
