"""Conversion between the original checkpoint files and ``.safetensors``."""

from __future__ import annotations

from pathlib import Path

import torch

from dagan.errors import DaganError
from dagan.io.atomic import check_outputs
from dagan.io.checkpoint import (
    DAGAN_GROUPS,
    DEPTH_CLASSIFIER_KEYS,
    DEPTH_GROUPS,
    DEPTH_META_KEYS,
    WeightFile,
    read_dagan_checkpoint,
    read_depth_weights,
    read_safetensors,
    training_config_record,
    write_depth_directory,
    write_original_checkpoint,
    write_safetensors,
)
from dagan.pipelines.networks import load_dagan_networks, load_depth_network


def _validate(weights: WeightFile) -> None:
    """Refuse to convert anything that would not load strictly into the networks."""
    if "generator" in weights.groups or "kp_detector" in weights.groups:
        load_dagan_networks(weights)
    if any(g in weights.groups for g in DEPTH_GROUPS):
        load_depth_network(
            WeightFile({g: weights.groups.get(g, {}) for g in DEPTH_GROUPS}, weights.metadata, weights.source)
        )


def convert(
    source: str | Path,
    target: str | Path,
    depth_weights: str | Path | None = None,
    half: bool = False,
    inference_only: bool = False,
) -> str:
    """Convert ``source`` into ``target``; returns a one-line description of what was written.

    - ``.pth.tar`` (and optional depth weights) to ``.safetensors``;
    - a depth directory (``encoder.pth`` + ``depth.pth``) to ``.safetensors``;
    - ``.safetensors`` to ``.pth.tar`` (DaGAN groups) or to a directory (its depth groups, also
      out of a full model file).

    ``inference_only`` leaves out what animation never runs: the discriminator and the depth
    encoder's ImageNet classifier.
    """
    folders = [] if Path(target).suffix else ["OUTPUT"]
    check_outputs({"OUTPUT": target}, {"INPUT": source, "--depth-weights": depth_weights}, folders)
    source, target = Path(source), Path(target)
    if source.is_dir():
        weights = read_depth_weights(source)
    elif source.suffix == ".safetensors":
        weights = read_safetensors(source)
    else:
        weights = read_dagan_checkpoint(source)
    if depth_weights is not None:
        depth = read_depth_weights(depth_weights)
        weights.groups.update(depth.groups)
        # Only what describes the depth network: a full model file also records the DaGAN's own facts.
        weights.metadata.update({k: v for k, v in depth.metadata.items() if k in DEPTH_META_KEYS})
    if inference_only:
        weights.groups.pop("discriminator", None)
        if "depth_encoder" in weights.groups:
            encoder = weights.groups["depth_encoder"]
            weights.groups["depth_encoder"] = {k: v for k, v in encoder.items() if k not in DEPTH_CLASSIFIER_KEYS}
    if not weights.groups:
        raise DaganError(f"{source} holds no DaGAN or depth tensors")
    _validate(weights)

    if target.suffix == ".safetensors":
        write_safetensors(target, weights.groups, weights.metadata, dtype=torch.float16 if half else None)
        return f"wrote {target} ({', '.join(sorted(weights.groups))}{', fp16' if half else ''})"
    has_dagan = any(g in weights.groups for g in DAGAN_GROUPS)
    has_depth = all(g in weights.groups for g in DEPTH_GROUPS)
    if has_dagan and target.suffix in (".tar", ".pth", ".pt", ".ckpt"):
        record = training_config_record(weights.metadata)
        extra = {"config": record} if record else None
        write_original_checkpoint(target, {g: v for g, v in weights.groups.items() if g in DAGAN_GROUPS}, extra)
        return f"wrote {target} (original .pth.tar layout)"
    if has_depth and not target.suffix and (not has_dagan or source.suffix == ".safetensors"):
        # A full model file gives up its depth network: the original code reads it from a folder.
        write_depth_directory(target, weights.groups, weights.metadata)
        return f"wrote {target}/encoder.pth and {target}/depth.pth"
    raise DaganError(
        f"cannot convert {source} to {target}: use a .safetensors target, a .pth.tar target for DaGAN "
        "weights, or a directory target for depth weights"
    )
