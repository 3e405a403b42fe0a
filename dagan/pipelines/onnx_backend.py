"""ONNX export of the animation networks (``dagan export-onnx``) and an onnxruntime backend for ``animate``.

Four graphs, so that the source is still encoded once per video:

- ``depth.onnx``: image (B, 3, H, W) -> disparity (B, 1, H, W);
- ``keypoints.onnx``: image and disparity (B, 4, H, W) -> keypoints (B, K, 2) [and jacobians (B, K, 2, 2)];
- ``source_encoder.onnx``: source image and disparity -> the generator's source encodings;
- ``generator.onnx``: source image, both keypoint sets and the encodings -> prediction (B, 3, H, W).

``onnx.json`` beside them records the frame size and whether keypoints carry jacobians. The
batch axis is dynamic everywhere except for the source inputs, which have batch 1.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dagan.config import check_depth_size
from dagan.errors import DaganError, first_line
from dagan.io.atomic import atomic_output, check_writable_directory, removed_if_failed_empty
from dagan.nn import Keypoints, SourceEncoding
from dagan.nn.fuse import fuse_for_inference
from dagan.pipelines.networks import AnimationNetworks

OPSET = 17
MANIFEST = "onnx.json"
GRAPHS = ("depth", "keypoints", "source_encoder", "generator")


class _KeypointGraph(nn.Module):
    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, image_and_depth: torch.Tensor) -> tuple[torch.Tensor, ...]:
        kp = self.detector(image_and_depth)
        return (kp.value,) if kp.jacobian is None else (kp.value, kp.jacobian)


class _SourceEncoderGraph(nn.Module):
    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, source: torch.Tensor, source_depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        encoding = self.generator.encode_source(source, source_depth)
        return encoding.features, encoding.depth_features


class _GeneratorGraph(nn.Module):
    def __init__(self, generator: nn.Module, jacobians: bool):
        super().__init__()
        self.generator = generator
        self.jacobians = jacobians

    def forward(
        self, source: torch.Tensor, features: torch.Tensor, depth_features: torch.Tensor, *keypoints: torch.Tensor
    ) -> torch.Tensor:
        if self.jacobians:
            kp_driving, kp_source = Keypoints(keypoints[0], keypoints[1]), Keypoints(keypoints[2], keypoints[3])
        else:
            kp_driving, kp_source = Keypoints(keypoints[0]), Keypoints(keypoints[1])
        encoding = SourceEncoding(features, depth_features)
        return self.generator(source, kp_driving, kp_source, None, encoding=encoding)["prediction"]


def _export(
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    batch_axes: list[str],
) -> None:
    with atomic_output(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its own deprecation
        torch.onnx.export(
            module,
            inputs,
            str(tmp),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes={name: {0: "batch"} for name in batch_axes},
            opset_version=OPSET,
            dynamo=False,
        )


@torch.no_grad()
def export_onnx(networks: AnimationNetworks, out: str | Path, size: int = 256) -> list[Path]:
    """Write the four graphs and ``onnx.json`` to ``out``; the networks are fused first (same outputs)."""
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError as exc:
        raise DaganError("dagan export-onnx needs the onnx package: pip install 'dagan[onnx]'") from exc
    check_depth_size(size)
    out = Path(out)
    with removed_if_failed_empty(out):
        check_writable_directory(out)
        return _export_graphs(networks, out, size)


def _export_graphs(networks: AnimationNetworks, out: Path, size: int) -> list[Path]:
    # Winograd convolutions use strided views that ONNX cannot express; onnxruntime has its own.
    depth = fuse_for_inference(networks.depth, winograd=False).cpu()
    detector = fuse_for_inference(networks.kp_detector, winograd=False).cpu()
    generator = fuse_for_inference(networks.generator, winograd=False).cpu()
    image = torch.rand(2, 3, size, size)
    disparity = depth(image)
    image_and_depth = torch.cat([image, disparity], 1)
    kp = detector(image_and_depth)
    jacobians = kp.jacobian is not None
    source, source_depth = image[:1], disparity[:1]
    encoding = generator.encode_source(source, source_depth)
    if jacobians:
        kp_names = ["kp_driving", "jacobian_driving", "kp_source", "jacobian_source"]
        kp_inputs = (kp.value, kp.jacobian, kp.value[:1], kp.jacobian[:1])
    else:
        kp_names, kp_inputs = ["kp_driving", "kp_source"], (kp.value, kp.value[:1])
    generator_inputs = (source, encoding.features, encoding.depth_features, *kp_inputs)
    generator_graph = _GeneratorGraph(generator, jacobians).eval()
    # One eager call before any export: fused layers build their weight forms on first use, and
    # built in a trace they would become graph operations instead of constants. (Each export
    # leaves its module in the mode it found it, so the call must not come after one.)
    generator_graph(*generator_inputs)
    _export(depth, (image,), out / "depth.onnx", ["image"], ["disparity"], ["image", "disparity"])
    kp_outputs = ["value", "jacobian"] if jacobians else ["value"]
    keypoint_graph = _KeypointGraph(detector).eval()
    _export(
        keypoint_graph,
        (image_and_depth,),
        out / "keypoints.onnx",
        ["image_and_depth"],
        kp_outputs,
        ["image_and_depth", *kp_outputs],
    )
    encoder_graph = _SourceEncoderGraph(generator).eval()
    _export(
        encoder_graph,
        (source, source_depth),
        out / "source_encoder.onnx",
        ["source", "source_depth"],
        ["features", "depth_features"],
        [],
    )
    generator_names = ["source", "features", "depth_features", *kp_names]
    batch_axes = [name for name in kp_names if name.endswith("driving")] + ["prediction"]
    _export(
        generator_graph,
        generator_inputs,
        out / "generator.onnx",
        generator_names,
        ["prediction"],
        batch_axes,
    )
    written = [out / f"{name}.onnx" for name in GRAPHS]
    manifest = {"size": size, "jacobians": jacobians, "num_kp": int(kp.value.shape[1]), "opset": OPSET}
    with atomic_output(out / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    return [*written, out / MANIFEST]


def is_onnx_export(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``export_onnx``."""
    return (Path(path) / MANIFEST).is_file()


class _Session:
    """An onnxruntime session called with and returning torch tensors (CPU, float32)."""

    def __init__(self, path: Path, providers: list[str]):
        import onnxruntime

        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise DaganError(f"cannot load ONNX graph {path}: {first_line(exc)}") from exc
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        feed = {
            name: t.detach().float().cpu().contiguous().numpy() for name, t in zip(self.inputs, tensors, strict=True)
        }
        return [torch.from_numpy(np.asarray(o)) for o in self.session.run(None, feed)]


class _OnnxKeypoints:
    def __init__(self, session: _Session):
        self.session = session

    def __call__(self, image_and_depth: torch.Tensor) -> Keypoints:
        outputs = self.session(image_and_depth)
        return Keypoints(outputs[0], outputs[1] if len(outputs) > 1 else None)


class _OnnxDepth:
    def __init__(self, session: _Session):
        self.session = session

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.session(image)[0]


class _OnnxGenerator:
    def __init__(self, encoder: _Session, generator: _Session):
        self.encoder, self.generator = encoder, generator

    def encode_source(self, source: torch.Tensor, source_depth: torch.Tensor) -> SourceEncoding:
        return SourceEncoding(*self.encoder(source, source_depth))

    def __call__(
        self,
        source: torch.Tensor,
        kp_driving: Keypoints,
        kp_source: Keypoints,
        source_depth: torch.Tensor,
        driving_depth: torch.Tensor | None = None,
        *,
        encoding: SourceEncoding,
    ) -> dict[str, torch.Tensor]:
        if kp_driving.jacobian is not None:
            kp = (kp_driving.value, kp_driving.jacobian, kp_source.value, kp_source.jacobian)
        else:
            kp = (kp_driving.value, kp_source.value)
        return {"prediction": self.generator(source, encoding.features, encoding.depth_features, *kp)[0]}


@dataclass
class OnnxNetworks:
    """Drop-in for ``AnimationNetworks`` in ``Animator``, running the exported graphs in onnxruntime."""

    depth: _OnnxDepth
    kp_detector: _OnnxKeypoints
    generator: _OnnxGenerator
    size: int

    @classmethod
    def load(cls, directory: str | Path, providers: list[str] | None = None) -> OnnxNetworks:
        """Open the graphs in ``directory`` (from ``dagan export-onnx``)."""
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise DaganError("--backend onnxruntime needs onnxruntime: pip install 'dagan[onnx]'") from exc
        directory = Path(directory)
        if not is_onnx_export(directory):
            raise DaganError(f"{directory} is not an ONNX export (no {MANIFEST}): run dagan export-onnx first")
        try:
            manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
            size = manifest["size"]
            if isinstance(size, bool) or not isinstance(size, int):
                raise TypeError(f"size {size!r} is not a whole number")
            check_depth_size(size)
        except (ValueError, KeyError, TypeError, DaganError) as exc:
            raise DaganError(f"{directory / MANIFEST} is not a valid export manifest ({first_line(exc)})") from exc
        providers = providers or ["CPUExecutionProvider"]
        sessions = {name: _Session(directory / f"{name}.onnx", providers) for name in GRAPHS}
        return cls(
            _OnnxDepth(sessions["depth"]),
            _OnnxKeypoints(sessions["keypoints"]),
            _OnnxGenerator(sessions["source_encoder"], sessions["generator"]),
            size,
        )
