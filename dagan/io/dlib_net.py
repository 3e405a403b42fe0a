"""Read the weights of dlib's face recognition ResNet from its ``.dat`` file into ``DlibFaceResNet``.

dlib writes a network with its own serialiser, outermost layer first: the loss layer, one version
number per layer wrapper down to the input, the input layer, then each layer's record from the
input outwards. The wiring (tags, skips) is not in the file: it is the architecture that
``dagan.nn.dlib_face_resnet`` builds, so the records are checked against it as they are read.

The encodings (dlib's ``serialize.h``): an integer is a control byte (0x80 = negative, low four
bits = byte count) then that many little-endian bytes; a string is its length then its bytes; a
bool is the character '0' or '1'; a float value is an integer mantissa then an integer exponent of
two; a tensor is a version (2), four dimensions (N, K, R, C) and raw little-endian float32 data.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from dagan.errors import DaganError
from dagan.nn.dlib_face_resnet import DlibFaceResNet


class _Stream:
    """A cursor over the file's bytes; every read fails with a DaganError past the end."""

    def __init__(self, data: bytes, name: str):
        self.data, self.at, self.name = data, 0, name

    def _take(self, count: int) -> bytes:
        if self.at + count > len(self.data):
            raise DaganError(f"{self.name}: ends early: not a complete dlib network file")
        chunk = self.data[self.at : self.at + count]
        self.at += count
        return chunk

    def integer(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8:
            raise DaganError(f"{self.name}: unreadable integer at byte {self.at - 1}: not a dlib network file")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def string(self) -> str:
        length = self.integer()
        if not 0 <= length <= 256:
            raise DaganError(f"{self.name}: unreadable name at byte {self.at}: not a dlib network file")
        return self._take(length).decode("ascii", errors="replace")

    def boolean(self) -> bool:
        return self._take(1) == b"1"

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        return math.ldexp(mantissa, exponent) if exponent < 32000 else math.nan

    def tensor(self) -> np.ndarray:
        if self.integer() != 2:
            raise DaganError(f"{self.name}: unknown tensor version at byte {self.at}")
        shape = [self.integer() for _ in range(4)]
        if min(shape) < 0:
            raise DaganError(f"{self.name}: a tensor of shape {shape} at byte {self.at}: not a dlib network file")
        count = math.prod(shape)
        return np.frombuffer(self._take(4 * count), dtype="<f4").reshape(shape)

    def alias(self) -> None:
        self.integer()
        for _ in range(4):
            self.integer()


def _layer(stream: _Stream, name: str) -> np.ndarray | None:
    """Read one layer record after its name; the parameters of a convolution, affine or fc layer."""
    if name.startswith("con_"):
        params = stream.tensor()
        for _ in range(7):  # filters, rows, columns, strides, paddings: the architecture fixes them
            stream.integer()
        stream.alias(), stream.alias()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            stream.real()
        return params
    if name == "affine_":
        params = stream.tensor()
        stream.alias(), stream.alias()
        stream.integer()
        return params
    if name.startswith(("max_pool_", "avg_pool_")):
        for _ in range(6):
            stream.integer()
        return None
    if name in ("relu_", "add_prev_"):
        return None
    if name.startswith("fc_"):
        outputs, inputs = stream.integer(), stream.integer()
        params = stream.tensor().reshape(inputs, outputs)
        stream.alias(), stream.alias()
        stream.integer()
        for _ in range(4):
            stream.real()
        return params
    raise DaganError(f"{stream.name}: layer {name!r} is not in dlib's face recognition ResNet")


def read_dlib_face_resnet(path: str | Path) -> DlibFaceResNet:
    """dlib's ``dlib_face_recognition_resnet_model_v1.dat`` as a ``DlibFaceResNet`` in eval mode."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DaganError(f"cannot read dlib's face recognition network {path}: {exc.strerror}") from None
    stream = _Stream(data, path.name)
    stream.integer()
    if not stream.string().startswith("loss_metric_"):
        raise DaganError(f"{path.name}: not dlib's face recognition network (no metric loss layer)")
    stream.real(), stream.real()
    while stream.integer() != 3:  # wrapper versions down to the layer on the input (version 3)
        pass
    if stream.string() != "input_rgb_image_sized":
        raise DaganError(f"{path.name}: not dlib's face recognition network (no RGB image input)")
    for _ in range(3):
        stream.real()
    stream.integer(), stream.integer()

    params: list[tuple[str, np.ndarray]] = []
    innermost = True
    while stream.at < len(stream.data):
        name = stream.string()
        found = _layer(stream, name)
        if found is not None:
            params.append((name, found))
        for _ in range(3):  # the wrapper's state flags and its (empty) gradient and output buffers
            stream.boolean()
        for _ in range(3):
            stream.tensor()
        if innermost:
            stream.integer()  # the input layer's sample expansion factor
            innermost = False
    return _network(params, path.name)


def _network(params: list[tuple[str, np.ndarray]], name: str) -> DlibFaceResNet:
    """Fill the network's convolutions, affines and fc, in forward order, from the records' parameters."""
    network = DlibFaceResNet()
    targets: list[tuple[str, torch.nn.Module]] = [("con_", network.conv), ("affine_", network.affine)]
    for block in network.blocks:
        targets += [
            ("con_", block.conv1),
            ("affine_", block.affine1),
            ("con_", block.conv2),
            ("affine_", block.affine2),
        ]
    targets.append(("fc_", network.fc))
    records = [record for record, _ in params]
    wanted = [kind for kind, _ in targets]
    if len(records) != len(wanted) or any(not r.startswith(k) for r, k in zip(records, wanted, strict=True)):
        raise DaganError(f"{name}: its layers are not those of dlib's face recognition ResNet v1")
    with torch.no_grad():
        for (kind, module), (_, values) in zip(targets, params, strict=True):
            flat = torch.from_numpy(values.reshape(-1).copy())
            if kind == "fc_":
                if tuple(values.shape) != (module.in_features, module.out_features):
                    raise DaganError(f"{name}: its fc layer is {values.shape}, not {module.in_features}x128")
                module.weight.copy_(flat.view(module.in_features, module.out_features).T)
                continue
            tensors = [module.weight, module.bias]
            if flat.numel() != sum(t.numel() for t in tensors):
                raise DaganError(f"{name}: a layer holds {flat.numel()} values, the architecture needs another count")
            for tensor, part in zip(tensors, flat.split([t.numel() for t in tensors]), strict=True):
                tensor.copy_(part.view_as(tensor))
    return network.eval()
