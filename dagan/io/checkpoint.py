"""Checkpoint files: the original ``.pth.tar`` / ``encoder.pth`` / ``depth.pth`` and ``.safetensors``.

Everything is loaded with ``weights_only=True``: a checkpoint can never run code. The network
architecture is read from the tensors themselves, so users pass no architecture flags.

A ``.safetensors`` file stores groups under prefixes: ``generator.``, ``kp_detector.``,
``discriminator.``, ``depth_encoder.`` and ``depth_decoder.``; any subset may be present.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
import struct
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dagan.config import DepthConfig, DiscriminatorConfig, ModelConfig
from dagan.errors import DaganError, first_line
from dagan.io.atomic import atomic_output, describe_write_failure
from dagan.nn.common import anti_alias_kernel_scale
from dagan.nn.resnet import RESNET_LAYOUTS

StateDict = dict[str, torch.Tensor]

DAGAN_GROUPS = ("generator", "kp_detector", "discriminator")
DEPTH_GROUPS = ("depth_encoder", "depth_decoder")
DEPTH_ENCODER_FILE = "encoder.pth"
#: The ResNet's ImageNet classifier: saved in encoder.pth by the original code, unused for depth.
DEPTH_CLASSIFIER_KEYS = ("encoder.fc.weight", "encoder.fc.bias")
DEPTH_DECODER_FILE = "depth.pth"
#: Non-tensor entries of the original ``encoder.pth`` (the depth training resolution).
DEPTH_META_KEYS = ("height", "width", "use_stereo")


@dataclass
class WeightFile:
    """Tensor groups read from one or more files, plus non-tensor metadata."""

    groups: dict[str, StateDict] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""


def load_torch_file(path: str | Path) -> Any:
    """``torch.load`` with ``weights_only=True``; any failure becomes a one-line ``DaganError``."""
    path = Path(path)
    if not path.is_file():
        raise DaganError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # keep user-facing errors to one line
            warnings.simplefilter("ignore")
            try:
                # Memory-mapped: optimiser states and unused groups are never read into RAM.
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)  # pre-1.6 format
    except pickle.UnpicklingError as exc:
        refused = _UNSAFE_GLOBAL.search(str(exc))
        if refused is None and not _starts_like_a_pickle(path):  # random bytes, a text file
            detail = _UNPICKLER_DETAIL.search(str(exc))
            reason = detail.group(1).strip() if detail else "not a pickle"
            raise DaganError(f"checkpoint {path} is not a readable PyTorch file ({reason[:80]})") from exc
        what = f"it refers to {refused.group(1)}" if refused else "it uses pickle instructions a safe load refuses"
        raise DaganError(
            f"checkpoint {path} was refused: it holds objects other than tensors, "
            f"which a safe load does not run ({what})"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, IndexError, struct.error) as exc:
        raise DaganError(f"checkpoint {path} is not a readable PyTorch file ({first_line(exc)})") from exc


#: What torch's refusal names (its own message is a page of advice with terminal escapes).
_UNSAFE_GLOBAL = re.compile(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)")
_UNPICKLER_DETAIL = re.compile(r"WeightsUnpickler error:\s*([^\n]+)")


def check_finite(groups: dict[str, StateDict], source: str) -> None:
    """Refuse weights holding NaN or infinity: they would give black frames without a word."""
    for group, tensors in groups.items():
        for key, tensor in tensors.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise DaganError(f"checkpoint {source}: {group} tensor {key} holds NaN or infinite values")


#: Metadata entries the readers use, with the type and range each must have.
_METADATA_RULES = {
    "frame_size": (int, "a whole number of pixels above 0"),
    "height": (int, "a whole number of pixels above 0"),
    "width": (int, "a whole number of pixels above 0"),
    "epoch": (int | float, "a number"),
    "align_corners": (bool, "true or false"),
    "use_stereo": (bool, "true or false"),
}


def check_metadata(metadata: dict[str, Any], source: str) -> dict[str, Any]:
    """Refuse metadata of the wrong type or range, naming the entry and the file."""
    for key, (kind, wanted) in _METADATA_RULES.items():
        if key not in metadata:
            continue
        value = metadata[key]
        wrong = not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))
        if not wrong and kind is int and key != "epoch" and value < 1:
            wrong = True
        if wrong:
            raise DaganError(f"checkpoint {source}: metadata {key} is {value!r}, it must be {wanted}")
    return metadata


def _starts_like_a_pickle(path: Path) -> bool:
    """A pickle of protocol 2 or later opens with the PROTO opcode."""
    try:
        with open(path, "rb") as handle:
            return handle.read(1) == b"\x80"
    except OSError:
        return False


def require_state_dict(value: Any, what: str, source: str | Path) -> StateDict:
    """``value`` if it is a mapping of names to tensors; else one line saying what the file holds instead."""
    if not isinstance(value, dict):
        raise DaganError(f"{source}: {what} weights are a {type(value).__name__}, not a state dict of tensors")
    odd = [key for key, tensor in value.items() if not isinstance(key, str) or not isinstance(tensor, torch.Tensor)]
    if odd:
        raise DaganError(f"{source}: {what} weights hold non-tensor entries ({', '.join(map(str, odd[:3]))})")
    return value


def strip_wrapper_prefixes(state: dict[str, Any]) -> dict[str, Any]:
    """Remove ``module.`` prefixes left by DataParallel/DistributedDataParallel, anywhere in a key."""
    out = {}
    for key, value in state.items():
        while key.startswith("module."):
            key = key[len("module.") :]
        key = key.replace(".module.", ".")
        out[key] = value
    return out


def _tensor_dict(value: Any, what: str, path: Path) -> StateDict:
    if not isinstance(value, dict):
        raise DaganError(f"checkpoint {path}: '{what}' is a {type(value).__name__}, not a state dict")
    tensors = {k: v for k, v in value.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise DaganError(f"checkpoint {path}: '{what}' holds no tensors")
    return strip_wrapper_prefixes(tensors)


def read_safetensors(path: Path) -> WeightFile:
    """Read a grouped ``.safetensors`` file written by ``dagan``."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            groups: dict[str, StateDict] = {}
            for key in handle.keys():
                group, _, name = key.partition(".")
                groups.setdefault(group, {})[name] = handle.get_tensor(key)
    except (SafetensorError, OSError, ValueError) as exc:
        raise DaganError(f"checkpoint {path} is not a readable safetensors file ({first_line(exc)})") from exc
    unknown = sorted(set(groups) - set(DAGAN_GROUPS) - set(DEPTH_GROUPS))
    if unknown:
        raise DaganError(f"checkpoint {path}: unknown tensor groups {', '.join(unknown)}")
    for group, tensors in groups.items():
        groups[group] = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    parsed = {}
    for key, text in metadata.items():
        if key.startswith("dagan."):
            try:
                parsed[key.removeprefix("dagan.")] = json.loads(text)
            except ValueError as exc:
                raise DaganError(f"checkpoint {path}: metadata {key} is not valid JSON ({first_line(exc)})") from exc
    return WeightFile(groups, check_metadata(parsed, str(path)), str(path))


def read_dagan_checkpoint(path: str | Path) -> WeightFile:
    """Read generator and keypoint-detector weights (and more) from a ``.pth.tar`` or ``.safetensors``."""
    path = Path(path)
    if not path.is_file():
        raise DaganError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        weights = read_safetensors(path)
    else:
        raw = load_torch_file(path)
        if not isinstance(raw, dict):
            raise DaganError(f"checkpoint {path} is a {type(raw).__name__}, not a DaGAN checkpoint dict")
        raw = strip_wrapper_prefixes(raw)
        groups = {g: _tensor_dict(raw[g], g, path) for g in DAGAN_GROUPS if g in raw}
        metadata: dict[str, Any] = {}
        if "epoch" in raw and isinstance(raw["epoch"], int | float):
            metadata["epoch"] = raw["epoch"]
        size = _training_frame_size(raw.get("config"))
        if size is not None:
            metadata["frame_size"] = size
        if recorded_align_corners(raw.get("config")):
            metadata["align_corners"] = True
        weights = WeightFile(groups, metadata, str(path))
    missing = [g for g in ("generator", "kp_detector") if g not in weights.groups]
    if missing:
        found = ", ".join(sorted(weights.groups)) or "none"
        raise DaganError(
            f"checkpoint {path} is not a DaGAN checkpoint: it lacks {' and '.join(missing)} (groups found: {found})"
        )
    check_finite(weights.groups, str(path))
    return weights


def _training_frame_size(config: object) -> int | None:
    """The frame size ``dagan train`` records in its checkpoints' ``config``; None when absent."""
    try:
        size = config["data"]["frame_shape"][0]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return None
    return int(size) if isinstance(size, int) and size > 0 else None


def recorded_align_corners(config: object) -> bool:
    """Whether a ``dagan train`` config (as recorded in its checkpoints) asks for aligned-corner warps."""
    try:
        return config["model"]["generator"]["dense_motion"]["align_corners"] is True  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return False


def training_config_record(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The part of a ``dagan train`` config that ``read_dagan_checkpoint`` reads back, from metadata.

    Lets a ``.pth.tar`` written from a ``.safetensors`` keep its frame size and warp convention.
    """
    record: dict[str, Any] = {}
    if isinstance(metadata.get("frame_size"), int):
        size = metadata["frame_size"]
        record["data"] = {"frame_shape": [size, size, 3]}
    if metadata.get("align_corners") is True:
        record["model"] = {"generator": {"dense_motion": {"align_corners": True}}}
    return record or None


def read_depth_weights(path: str | Path) -> WeightFile:
    """Read the face-depth network from a directory (``encoder.pth`` + ``depth.pth``) or a ``.safetensors``."""
    path = Path(path)
    if path.is_dir():
        enc_path, dec_path = path / DEPTH_ENCODER_FILE, path / DEPTH_DECODER_FILE
        for p in (enc_path, dec_path):
            if not p.is_file():
                raise DaganError(
                    f"depth weights {path} lack {p.name} (expected {DEPTH_ENCODER_FILE} and {DEPTH_DECODER_FILE})"
                )
        enc_raw, dec_raw = load_torch_file(enc_path), load_torch_file(dec_path)
        for p, raw in ((enc_path, enc_raw), (dec_path, dec_raw)):
            if not isinstance(raw, dict):
                raise DaganError(f"depth weights {p} is a {type(raw).__name__}, not a state dict")
        metadata = {
            k: enc_raw[k] for k in DEPTH_META_KEYS if k in enc_raw and isinstance(enc_raw[k], int | float | bool)
        }
        groups = {
            "depth_encoder": _tensor_dict(enc_raw, DEPTH_ENCODER_FILE, enc_path),
            "depth_decoder": _tensor_dict(dec_raw, DEPTH_DECODER_FILE, dec_path),
        }
        check_finite(groups, str(path))
        return WeightFile(groups, check_metadata(metadata, str(enc_path)), str(path))
    if path.suffix == ".safetensors" and path.is_file():
        weights = read_safetensors(path)
        missing = [g for g in DEPTH_GROUPS if g not in weights.groups]
        if missing:
            raise DaganError(f"depth weights {path} lack the {' and '.join(missing)} tensors")
        depth_groups = {g: weights.groups[g] for g in DEPTH_GROUPS}
        check_finite(depth_groups, str(path))
        return WeightFile(depth_groups, weights.metadata, str(path))
    if not path.exists():
        raise DaganError(f"depth weights {path} do not exist")
    raise DaganError(
        f"depth weights {path} must be a directory with {DEPTH_ENCODER_FILE} and {DEPTH_DECODER_FILE}, "
        "or a .safetensors file"
    )


def _count_indexed(keys: set[str], prefix: str) -> int:
    n = 0
    while any(k.startswith(f"{prefix}{n}.") for k in keys):
        n += 1
    return n


def _shape(state: StateDict, key: str, what: str, source: str) -> torch.Size:
    """The shape of a convolution weight the architecture is read from (4-D, or the file is not a model)."""
    if key not in state:
        raise DaganError(f"checkpoint {source}: {what} lacks '{key}', so its architecture cannot be read")
    if state[key].ndim != 4:
        raise DaganError(f"checkpoint {source}: {what} '{key}' has shape {list(state[key].shape)}, not a convolution's")
    return state[key].shape


def infer_model_config(weights: WeightFile, base: ModelConfig | None = None) -> ModelConfig:
    """Read the generator variant, num_kp and every width/depth from the tensors."""
    try:
        return _infer_model_config(weights, base or ModelConfig())
    except (IndexError, KeyError, ValueError, TypeError) as exc:
        # A tensor of the wrong rank (a scalar where a convolution belongs): not a model we can build.
        raise DaganError(
            f"checkpoint {weights.source}: its tensor shapes describe no DaGAN model ({first_line(exc, 120)})"
        ) from exc


def _infer_model_config(weights: WeightFile, base: ModelConfig) -> ModelConfig:
    src = weights.source
    gen, kp = weights.groups["generator"], weights.groups["kp_detector"]
    gkeys, kkeys = set(gen), set(kp)

    kp_first = _shape(kp, "predictor.encoder.down_blocks.0.conv.weight", "kp_detector", src)
    num_kp = _shape(kp, "kp.weight", "kp_detector", src)[0]
    kp_blocks = _count_indexed(kkeys, "predictor.encoder.down_blocks.")
    jac = kp.get("jacobian.weight")
    kp_cfg = dataclasses.replace(
        base.kp_detector,
        num_kp=num_kp,
        num_channels=kp_first[1],
        block_expansion=kp_first[0] // 2,
        num_blocks=kp_blocks,
        max_features=max(kp[f"predictor.encoder.down_blocks.{i}.conv.weight"].shape[0] for i in range(kp_blocks)),
        estimate_jacobian=jac is not None,
        single_jacobian_map=jac is not None and jac.shape[0] == 4 and num_kp != 1,
        scale_factor=anti_alias_kernel_scale(kp["down.weight"].shape[-1]) if "down.weight" in kp else 1,
    )

    variant = "spade" if any(k.startswith("decoder.G_middle_0.") for k in gkeys) else "depth_aware"
    if variant == "depth_aware" and "final.weight" not in gkeys:
        raise DaganError(
            f"checkpoint {src}: the generator is neither a DepthAwareGenerator nor a SPADEDepthAwareGenerator"
        )
    first = _shape(gen, "first.conv.weight", "generator", src)
    down = _count_indexed(gkeys, "down_blocks.")
    widths = [gen[f"down_blocks.{i}.conv.weight"].shape[0] for i in range(down)]
    dm = "dense_motion_network."
    dm_first = _shape(gen, f"{dm}hourglass.encoder.down_blocks.0.conv.weight", "generator", src)
    dm_blocks = _count_indexed(gkeys, f"{dm}hourglass.encoder.down_blocks.")
    dense = dataclasses.replace(
        base.generator.dense_motion,
        num_kp=num_kp,
        num_channels=first[1],
        block_expansion=dm_first[0] // 2,
        num_blocks=dm_blocks,
        max_features=max(gen[f"{dm}hourglass.encoder.down_blocks.{i}.conv.weight"].shape[0] for i in range(dm_blocks)),
        scale_factor=anti_alias_kernel_scale(gen[f"{dm}down.weight"].shape[-1]) if f"{dm}down.weight" in gkeys else 1,
        estimate_occlusion_map=f"{dm}occlusion.weight" in gkeys,
        align_corners=_align_corners(weights),
    )
    gen_cfg = dataclasses.replace(
        base.generator,
        variant=variant,
        num_channels=first[1],
        block_expansion=first[0],
        max_features=max(widths + [first[0]]),
        num_down_blocks=down,
        num_bottleneck_blocks=_count_indexed(gkeys, "bottleneck.r"),
        dense_motion=dense,
        blend_deformed="blend.weight" in gkeys,
    )
    config = dataclasses.replace(base, kp_detector=kp_cfg, generator=gen_cfg)
    disc = weights.groups.get("discriminator")
    if disc is not None:
        config = dataclasses.replace(config, discriminator=_infer_discriminator(disc, config, src))
    return config.with_num_kp(num_kp)


def _align_corners(weights: WeightFile) -> bool:
    """The warps' grid convention, which no tensor shows: recorded in the metadata by dagan's own models."""
    value = weights.metadata.get("align_corners", False)
    if not isinstance(value, bool):
        raise DaganError(f"checkpoint {weights.source} records an invalid align_corners {value!r}")
    return value


def _infer_discriminator(disc: StateDict, config: ModelConfig, src: str) -> DiscriminatorConfig:
    keys = set(disc)
    scales = []
    for key in sorted({k.split(".")[1] for k in keys if k.startswith("discs.")}):
        scales.append(float(key.replace("-", ".")) if "-" in key else int(key))
    if not scales:
        raise DaganError(f"checkpoint {src}: the discriminator has no 'discs.<scale>' tensors")
    prefix = f"discs.{str(scales[0]).replace('.', '-')}."
    sn = any(k.endswith("weight_orig") for k in keys)
    wkey = "conv.weight_orig" if sn else "conv.weight"
    first = _shape(disc, f"{prefix}down_blocks.0.{wkey}", "discriminator", src)
    blocks = _count_indexed(keys, f"{prefix}down_blocks.")
    widths = [disc[f"{prefix}down_blocks.{i}.{wkey}"].shape[0] for i in range(blocks)]
    use_kp = first[1] != config.generator.num_channels
    return dataclasses.replace(
        config.discriminator,
        scales=tuple(scales),
        block_expansion=first[0] // 2,
        num_blocks=blocks,
        max_features=max(widths),
        use_kp=use_kp,
        sn=sn,
        num_channels=config.generator.num_channels,
    )


def infer_depth_config(weights: WeightFile) -> DepthConfig:
    """ResNet depth (18/34/50/101/152) from the encoder tensors, resolution from the metadata."""
    enc = weights.groups["depth_encoder"]
    keys = {k.removeprefix("encoder.") for k in enc}
    if "conv1.weight" not in keys:
        raise DaganError(f"depth weights {weights.source}: the encoder lacks 'encoder.conv1.weight'")
    bottleneck = "layer1.0.conv3.weight" in keys
    blocks = tuple(_count_indexed(keys, f"layer{i}.") for i in range(1, 5))
    layouts = {(bottlenecks, stages): depth for depth, (stages, bottlenecks) in RESNET_LAYOUTS.items()}
    layers = layouts.get((bottleneck, blocks))
    if layers is None:
        raise DaganError(f"depth weights {weights.source}: encoder blocks {blocks} match no torchvision ResNet")
    meta = weights.metadata
    return DepthConfig(num_layers=layers, height=int(meta.get("height", 256)), width=int(meta.get("width", 256)))


def load_strict(module: nn.Module, state: StateDict, what: str, source: str) -> None:
    """Load ``state`` exactly; any missing, unexpected or mis-shaped key is one ``DaganError`` line."""
    state = require_state_dict(state, what, source)
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} (file {list(state[k].shape)}, model {list(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or misshaped:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if items:
                shown = ", ".join(items[:4]) + (f", ... ({len(items) - 4} more)" if len(items) > 4 else "")
                parts.append(f"{len(items)} {label}: {shown}")
        raise DaganError(f"checkpoint {source}: {what} does not match {type(module).__name__}; " + "; ".join(parts))
    # Copied, not adopted (assign=False): adopted tensors would stay memory-mapped to the file,
    # and a checkpoint rewritten in place during a run would then crash it.
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


_SAFE_GROUP = re.compile(r"^[a-z_]+$")


def write_safetensors(
    path: str | Path,
    groups: dict[str, StateDict],
    metadata: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """Write tensor groups atomically to one ``.safetensors`` file (floats cast to ``dtype`` if given)."""
    from safetensors.torch import save_file

    flat = {}
    for group, tensors in groups.items():
        if not _SAFE_GROUP.match(group):
            raise ValueError(f"bad group name {group!r}")
        for key, value in tensors.items():
            value = value.detach().cpu()
            if dtype is not None and value.is_floating_point():
                value = value.to(dtype)
            flat[f"{group}.{key}"] = value.contiguous()
    meta = {f"dagan.{k}": json.dumps(v) for k, v in (metadata or {}).items()}
    from safetensors import SafetensorError

    with atomic_output(path) as tmp:
        try:
            save_file(flat, str(tmp), metadata=meta)
        except (SafetensorError, OSError) as exc:  # a full disk, a file system that refuses
            raise DaganError(describe_write_failure(path, exc)) from exc


def write_torch(path: str | Path, payload: dict[str, Any]) -> None:
    """``torch.save`` atomically (temp file, then rename)."""
    with atomic_output(path) as tmp:
        try:
            torch.save(payload, tmp)
        except (RuntimeError, OSError) as exc:  # torch reports a full disk as a RuntimeError
            raise DaganError(describe_write_failure(path, exc)) from exc


def write_original_checkpoint(
    path: str | Path, groups: dict[str, StateDict], extra: dict[str, Any] | None = None
) -> None:
    """Write the original ``.pth.tar`` layout: one state dict per network (plus optimisers, epoch)."""
    payload: dict[str, Any] = {g: groups[g] for g in DAGAN_GROUPS if g in groups}
    payload.update(extra or {})
    write_torch(path, payload)


def write_depth_directory(
    directory: str | Path, groups: dict[str, StateDict], metadata: dict[str, Any] | None = None
) -> None:
    """Write ``encoder.pth`` (with ``height``/``width``/``use_stereo``) and ``depth.pth`` as the original does."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DaganError(f"cannot create {directory}: {exc.strerror or exc}") from exc
    meta = {"height": 256, "width": 256, "use_stereo": False}
    meta.update({k: v for k, v in (metadata or {}).items() if k in DEPTH_META_KEYS})
    write_torch(directory / DEPTH_ENCODER_FILE, {**_with_classifier(groups["depth_encoder"]), **meta})
    write_torch(directory / DEPTH_DECODER_FILE, dict(groups["depth_decoder"]))


def _with_classifier(encoder: StateDict) -> StateDict:
    """The encoder with a zero ImageNet classifier where ``--inference-only`` left it out.

    The original code loads the encoder strictly, classifier included, though depth never uses it.
    """
    if all(k in encoder for k in DEPTH_CLASSIFIER_KEYS):
        return dict(encoder)
    features = max(v.shape[0] for k, v in encoder.items() if k.startswith("encoder.layer4.") and v.ndim == 4)
    weight, bias = DEPTH_CLASSIFIER_KEYS
    like = encoder["encoder.conv1.weight"]
    return {**encoder, weight: like.new_zeros(1000, features), bias: like.new_zeros(1000)}
