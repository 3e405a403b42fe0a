"""Read the weights of dlib's face recognition ResNet from its ``.dat`` file into ``DlibFaceResNet``.

dlib writes a network with its own serialiser, outermost layer first: the loss layer, one version
number per layer wrapper down to the input, the input layer, then each layer's record from the
input outwards. The wiring (tags, skips) is not in the file: it is the architecture that
``dagan.nn.dlib_face_resnet`` builds, so each record's name, shape, strides and paddings are
checked against it.

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


#: The record names (with dlib's format versions) that this reader knows.
CONVOLUTION, AFFINE, FULLY_CONNECTED = "con_4", "affine_", "fc_2"
_POOLS, _PLAIN = ("max_pool_2", "avg_pool_2"), ("relu_", "add_prev_")


def _layer(stream: _Stream, name: str) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """Read one layer record after its name: the parameters and geometry of a convolution, affine or fc layer."""
    if name == CONVOLUTION:
        params = stream.tensor()
        geometry = tuple(stream.integer() for _ in range(7))  # filters, rows, columns, strides, paddings
        stream.alias(), stream.alias()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            stream.real()
        return params, geometry
    if name == AFFINE:
        params = stream.tensor()
        stream.alias(), stream.alias()
        stream.integer()
        return params, ()
    if name in _POOLS:
        for _ in range(6):
            stream.integer()
        return None
    if name in _PLAIN:
        return None
    if name == FULLY_CONNECTED:
        geometry = (stream.integer(), stream.integer())  # outputs, inputs
        params = stream.tensor()
        stream.alias(), stream.alias()
        stream.integer()
        for _ in range(4):
            stream.real()
        return params, geometry
    raise DaganError(f"{stream.name}: layer record {name!r} is not one of dlib's face recognition ResNet v1")


def read_dlib_face_resnet(path: str | Path) -> DlibFaceResNet:
    """dlib's ``dlib_face_recognition_resnet_model_v1.dat`` as a ``DlibFaceResNet`` in eval mode."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DaganError(f"cannot read dlib's face recognition network {path}: {exc.strerror}") from None
    try:
        return _network(_records(_Stream(data, path.name)), path.name)
    except (ValueError, OverflowError) as exc:  # a damaged number: a float out of range, an impossible shape
        raise DaganError(f"{path.name}: damaged dlib network file ({exc})") from None


def _records(stream: _Stream) -> list[tuple[str, np.ndarray, tuple[int, ...]]]:
    """The parameter-holding layer records, from the input outwards."""
    stream.integer()
    if not stream.string().startswith("loss_metric_"):
        raise DaganError(f"{stream.name}: not dlib's face recognition network (no metric loss layer)")
    stream.real(), stream.real()
    while stream.integer() != 3:  # wrapper versions down to the layer on the input (version 3)
        pass
    if stream.string() != "input_rgb_image_sized":
        raise DaganError(f"{stream.name}: not dlib's face recognition network (no RGB image input)")
    for _ in range(3):
        stream.real()
    stream.integer(), stream.integer()

    records = []
    innermost = True
    while stream.at < len(stream.data):
        name = stream.string()
        found = _layer(stream, name)
        if found is not None:
            records.append((name, *found))
        for _ in range(3):  # the wrapper's state flags and its (empty) gradient and output buffers
            stream.boolean()
        for _ in range(3):
            stream.tensor()
        if innermost:
            stream.integer()  # the input layer's sample expansion factor
            innermost = False
    return records


def _geometry(module: torch.nn.Module) -> tuple[int, ...]:
    """What dlib records for a layer's shape: (filters, rows, columns, strides, paddings) or (outputs, inputs)."""
    if isinstance(module, torch.nn.Conv2d):
        return (module.out_channels, *module.kernel_size, *module.stride, *module.padding)
    if isinstance(module, torch.nn.Linear):
        return (module.out_features, module.in_features)
    return ()


def _network(records: list[tuple[str, np.ndarray, tuple[int, ...]]], name: str) -> DlibFaceResNet:
    """Fill the network's convolutions, affines and fc, in forward order, from the records, checking each."""
    network = DlibFaceResNet()
    targets: list[tuple[str, torch.nn.Module]] = [(CONVOLUTION, network.conv), (AFFINE, network.affine)]
    for block in network.blocks:
        targets += [
            (CONVOLUTION, block.conv1),
            (AFFINE, block.affine1),
            (CONVOLUTION, block.conv2),
            (AFFINE, block.affine2),
        ]
    targets.append((FULLY_CONNECTED, network.fc))
    if [record[0] for record in records] != [kind for kind, _ in targets]:
        raise DaganError(f"{name}: its layers are not those of dlib's face recognition ResNet v1")
    with torch.no_grad():
        for (kind, module), (_, values, geometry) in zip(targets, records, strict=True):
            tensors = [module.weight] if kind == FULLY_CONNECTED else [module.weight, module.bias]
            if geometry != _geometry(module) or values.size != sum(t.numel() for t in tensors):
                raise DaganError(f"{name}: a {kind} layer's shape is not the one dlib's face recognition ResNet v1 has")
            flat = torch.from_numpy(values.reshape(-1).copy())
            if kind == FULLY_CONNECTED:  # dlib stores (inputs, outputs)
                module.weight.copy_(flat.view(module.in_features, module.out_features).T)
                continue
            for tensor, part in zip(tensors, flat.split([t.numel() for t in tensors]), strict=True):
                tensor.copy_(part.view_as(tensor))
    return network.eval()
