"""Pretrained weights of the metric networks: a path the user gives, or the torch hub cache."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import torch

from dagan.errors import DaganError
from dagan.io.checkpoint import load_strict, load_torch_file, require_state_dict
from dagan.nn.arcface import ArcFaceResNet18
from dagan.nn.fid_inception import FidInception
from dagan.nn.lpips import CHANNELS, LPIPS

#: File names in ``torch.hub.get_dir()/checkpoints`` (where torchvision and pytorch-fid download them).
HUB_FILES = {"lpips": "alexnet-owt-7be5be79.pth", "fid": "pt_inception-2015-12-05-6726825d.pth"}


class MissingWeightsError(Exception):
    """The weights of a metric network are not where we looked; the message says where that was."""


def locate(metric: str, given: str | Path | None) -> Path:
    """The weights file for ``metric``: ``given``, else the hub cache."""
    if given is not None:
        if not Path(given).is_file():
            raise MissingWeightsError(f"weights not found at {given}")
        return Path(given)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / HUB_FILES[metric]
    if not cached.is_file():
        raise MissingWeightsError(f"weights not found at {cached} (pass --{metric}-weights PATH)")
    return cached


def load_lpips(given: str | Path | None = None) -> LPIPS:
    """LPIPS with torchvision's AlexNet trunk from ``given`` or the hub cache, and the shipped lin layers."""
    path = locate("lpips", given)
    state = load_torch_file(path)
    if not isinstance(state, dict):
        raise DaganError(f"{path}: the LPIPS AlexNet weights are a {type(state).__name__}, not a state dict")
    trunk = {k.removeprefix("features."): v for k, v in state.items() if str(k).startswith("features.")}
    if not trunk:
        raise DaganError(f"{path} has no AlexNet 'features.*' tensors")
    network = LPIPS()
    load_strict(network.features, trunk, "the LPIPS AlexNet trunk", str(path))
    with resources.files("dagan.metrics").joinpath("data/lpips_alex_v0.1.npz").open("rb") as handle:
        lin = np.load(handle)
        for index in range(len(CHANNELS)):
            getattr(network, f"lin{index}").weight.data.copy_(torch.from_numpy(lin[f"lin{index}_model_1_weight"]))
    return network


def load_fid_inception(given: str | Path | None = None) -> FidInception:
    """pytorch-fid's Inception with the pt_inception-2015-12-05 weights from ``given`` or the hub cache."""
    path = locate("fid", given)
    network = FidInception()
    load_strict(network, load_torch_file(path), "the FID Inception", str(path))
    return network


def load_arcface(path: str | Path) -> ArcFaceResNet18:
    """GFPGAN's ``arcface_resnet18.pth`` (a ``module.`` prefix from DataParallel is accepted)."""
    if not Path(path).is_file():
        raise MissingWeightsError(f"weights not found at {path}")
    state = require_state_dict(load_torch_file(path), "the ArcFace ResNet-18", path)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    network = ArcFaceResNet18()
    load_strict(network, state, "the ArcFace ResNet-18", str(path))
    return network
