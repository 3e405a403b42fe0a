"""Inference-only rewrites of trained networks that keep their outputs (to float rounding).

``fuse_for_inference`` returns a copy of a network (or rewrites it in place) in which

- every batch norm that directly follows a convolution is folded into that convolution;
- every nearest x2 upsampling followed by a 3x3 convolution is computed as a sub-pixel
  convolution on the low-resolution map (``SubpixelUpConv``): 16 instead of 36 multiply-adds
  per input channel, output channel and low-resolution pixel, 2.25x fewer;
- the 3x3 convolutions of residual blocks run as Winograd F(4x4, 3x3) convolutions
  (``WinogradConv3x3``): 4x fewer multiply-adds, one batched matrix product;
- the convolutions of hourglass blocks run as one matrix product on maps of 8x8 and smaller
  (``SmallMapConv``), where the convolution library spends its time re-laying-out the weights;
- spectral normalisation is baked into plain weights.

The result has different state-dict keys, so it is for running, never for saving or training.
Some layers build a weight form on their first call, when it is known which maps they see.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from dagan.nn.common import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d
from dagan.nn.resnet import ResNet

#: Held while a layer builds a weight form: frame workers may call one layer at once, and two
#: copies built side by side could leave the layer holding both.
_FORMS_LOCK = threading.Lock()


@contextlib.contextmanager
def _building_form(device: torch.device) -> Iterator[None]:
    """Plain float arithmetic on ordinary tensors, whatever the caller's mode or autocast."""
    with _FORMS_LOCK, torch.inference_mode(False), torch.no_grad(), torch.autocast(device.type, enabled=False):
        yield


#: For output parity 0 the 3 taps of a 3x3 kernel over a nearest-upsampled map land on low-res
#: offsets (-1, 0, 0); for parity 1 on (0, 0, +1). Rows: the two low-res taps; columns: the 3 taps.
_COLLAPSE = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])


class SmallMapConv(nn.Module):
    """A convolution that runs as unfold + one matrix product on maps of at most ``max_pixels``.

    On the 2x2 to 8x8 maps at the bottom of an hourglass (up to 2048 channels), oneDNN re-lays
    out the weights on every call and takes 3-6x longer than reading them once in a GEMM.
    """

    def __init__(self, conv: nn.Conv2d, max_pixels: int = 64):
        super().__init__()
        plain = conv.stride == (1, 1) and conv.groups == 1 and conv.dilation == (1, 1)
        if not plain or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("SmallMapConv needs a stride-1, ungrouped, undilated, zero-padded convolution")
        self.conv = conv
        self.max_pixels = max_pixels
        # Built on the first small map (see _matrix): which maps a layer sees is known only then.
        self.register_buffer("matrix", None, persistent=False)

    def _matrix(self) -> torch.Tensor:
        if self.matrix is None:
            with _building_form(self.conv.weight.device):
                if self.matrix is None:
                    weight = self.conv.weight.detach()
                    matrix = weight.reshape(weight.shape[0], -1).contiguous()
                    # The convolution's weight becomes a view of the matrix, so the layer holds
                    # its weights once (the largest layers of an hourglass see only small maps).
                    self.conv.weight = nn.Parameter(matrix.view(weight.shape), requires_grad=False)
                    self.matrix = matrix
        return self.matrix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the convolution."""
        b, _, h, w = x.shape
        if h * w > self.max_pixels:
            return self.conv(x)
        columns = F.unfold(x, self.conv.kernel_size, padding=self.conv.padding)  # (B, C_in k k, H W)
        out = self._matrix().to(columns.dtype) @ columns
        if self.conv.bias is not None:
            out = out + self.conv.bias.to(out.dtype)[:, None]
        return out.view(b, -1, h, w)


class SubpixelUpConv(nn.Module):
    """``conv(F.interpolate(x, scale_factor=2))`` for a 3x3, padding-1 ``conv``, without upsampling.

    Each of the four output parities is a 2x2 convolution of the zero-padded low-resolution map;
    all four run as one convolution with 4x the output channels, then interleave. Maps smaller
    than ``min_pixels`` take the plain path: there the convolution is bound by reading weights,
    and the sub-pixel weights are 16/9 as large, so they are built only when a larger map arrives.
    """

    def __init__(self, conv: nn.Conv2d, min_pixels: int = 256):
        super().__init__()
        if conv.kernel_size != (3, 3) or conv.padding != (1, 1) or conv.stride != (1, 1) or conv.groups != 1:
            raise ValueError("SubpixelUpConv needs a 3x3 convolution with padding 1, stride 1 and one group")
        self.conv = SmallMapConv(conv)
        self.min_pixels = min_pixels
        self.out_channels = conv.out_channels
        self.register_buffer("weight", None, persistent=False)
        self.register_buffer("bias", None, persistent=False)

    def _subpixel(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.weight is None:
            with _building_form(self.conv.conv.weight.device):
                if self.weight is None:  # another worker may have built it meanwhile
                    self.bias, self.weight = self._subpixel_weights()
        return self.weight, self.bias

    def _subpixel_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        conv = self.conv.conv
        weight = conv.weight.detach()
        collapse = _COLLAPSE.to(weight)
        # (parity_row, parity_col, out, in, 2, 2), flattened so parity (a, b) owns channel block 2a + b.
        # From an NCHW weight whatever its layout, so the sums run in one order.
        kernels = torch.einsum("apk,bql,oikl->aboipq", collapse, collapse, weight.contiguous())
        kernels = kernels.reshape(4 * self.out_channels, weight.shape[1], 2, 2)
        # The layout of the weight it came from (channels-last after Animator's conversion).
        channels_last = weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
        layout = torch.channels_last if channels_last else torch.contiguous_format
        bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(self.out_channels)
        return bias.repeat(4), kernels.contiguous(memory_format=layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) to (B, C_out, 2H, 2W)."""
        b, _, h, w = x.shape
        if h * w < self.min_pixels:
            return self.conv(F.interpolate(x, scale_factor=2))
        weight, bias = self._subpixel()
        full = F.conv2d(F.pad(x, (1, 1, 1, 1)), weight, bias)  # (B, 4 C_out, H + 1, W + 1)
        o = self.out_channels
        parities = [
            [full[:, (2 * a + c) * o : (2 * a + c + 1) * o, a : a + h, c : c + w] for c in (0, 1)] for a in (0, 1)
        ]
        if torch.jit.is_tracing():  # for ONNX, where strided writes export as scatters: 1.6x slower
            return torch.stack([torch.stack(row, -1) for row in parities], 3).reshape(b, o, 2 * h, 2 * w)
        # Each parity is copied straight into its pixels of the output: no stacked intermediates
        # (three more output-sized tensors per call, 32 MB at the last up-block of a 256 frame).
        out = full.new_empty(b, o, 2 * h, 2 * w)
        for a in (0, 1):
            for c in (0, 1):
                out[:, :, a::2, c::2] = parities[a][c]
        return out


# Winograd F(4x4, 3x3) with interpolation points 0, 1, -1, 2, -2 and infinity (Lavin & Gray,
# "Fast Algorithms for Convolutional Neural Networks", 2016): Y = A^T [(G g G^T) * (B^T d B)] A.
_WINOGRAD_BT = torch.tensor(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    dtype=torch.float64,
)
_WINOGRAD_G = (
    torch.tensor([[6, 0, 0], [-4, -4, -4], [-4, 4, -4], [1, 2, 4], [1, -2, 4], [0, 0, 24]], dtype=torch.float64) / 24
)
_WINOGRAD_AT = torch.tensor(
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=torch.float64
)


class WinogradConv3x3(nn.Module):
    """A 3x3, stride-1, padding-1 convolution computed with Winograd F(4x4, 3x3).

    Each 4x4 output tile needs 36 products per channel pair instead of 144; the products of all
    tiles run as 36 matrix multiplications in one ``bmm``. Rounding differs from a direct
    convolution by about 1e-5 relative, the same order as float32 itself.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.kernel_size != (3, 3) or conv.padding != (1, 1) or conv.stride != (1, 1) or conv.groups != 1:
            raise ValueError("WinogradConv3x3 needs a 3x3 convolution with padding 1, stride 1 and one group")
        weight = conv.weight.detach()
        g = _WINOGRAD_G
        # Transformed kernels indexed [column, row] to match the input tiles below: (36, C_in, C_out).
        kernels = torch.einsum("rk,ockl,ql->qrco", g, weight.double(), g).reshape(36, weight.shape[1], -1)
        self.kernels = nn.Parameter(kernels.to(weight.dtype).contiguous(), requires_grad=False)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(weight.shape[0], dtype=weight.dtype)
        self.bias = nn.Parameter(bias.clone(), requires_grad=False)
        self.register_buffer("input_transform", _WINOGRAD_BT.to(weight.dtype), persistent=False)
        self.register_buffer("output_transform", _WINOGRAD_AT.to(weight.dtype), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) to (B, C_out, H, W); any H and W."""
        b, c, h, w = x.shape
        tiles_h, tiles_w = -(-h // 4), -(-w // 4)
        bt = self.input_transform
        # Channels last, zero-padded so every 6x6 input tile (stride 4) lies inside.
        padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1 + 4 * tiles_w - w, 1, 1 + 4 * tiles_h - h)).contiguous()
        sb, sh, sw, sc = padded.stride()
        rows = padded.as_strided((b, tiles_h, 6, 4 * tiles_w + 2, c), (sb, 4 * sh, sh, sw, sc))
        # Under autocast the products come back in bf16/fp16: each transform follows its operand.
        rows = torch.tensordot(bt.to(rows.dtype), rows, dims=([1], [2])).contiguous()  # (6 rows, B, th, W', C)
        s = rows.stride()
        columns = rows.as_strided((6, b, tiles_h, tiles_w, 6, c), (s[0], s[1], s[2], 4 * s[3], s[3], s[4]))
        tiles = torch.tensordot(bt.to(columns.dtype), columns, dims=([1], [4]))  # (6 columns, 6 rows, B, th, tw, C)
        products = torch.bmm(tiles.reshape(36, -1, c), self.kernels).view(6, 6, -1, self.kernels.shape[2])
        at = self.output_transform.to(products.dtype)
        out = torch.tensordot(at, products, dims=([1], [0]))  # (4 columns, 6 rows, P, C_out)
        out = torch.tensordot(at, out, dims=([1], [1]))  # (4 rows, 4 columns, P, C_out)
        out = out.view(4, 4, b, tiles_h, tiles_w, -1).permute(2, 3, 0, 4, 1, 5).reshape(b, 4 * tiles_h, 4 * tiles_w, -1)
        return (out[:, :h, :w] + self.bias).permute(0, 3, 1, 2)


class ConvReLU(nn.Module):
    """Convolution (batch norm folded in), ReLU, then optional 2x2 average pooling."""

    def __init__(self, conv: nn.Module, pool: bool = False):
        super().__init__()
        self.conv = conv
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        out = F.relu(self.conv(x))
        return F.avg_pool2d(out, 2) if self.pool else out


class FusedResBlock(nn.Module):
    """``ResBlock2d`` with its second batch norm folded into the first convolution, both Winograd."""

    def __init__(self, block: ResBlock2d, winograd: bool = True):
        super().__init__()
        # The first norm follows a residual sum, not a convolution, so it stays.
        self.norm1 = block.norm1
        conv1, conv2 = fuse_conv_bn_eval(block.conv1, block.norm2), block.conv2
        if winograd and conv1.kernel_size == (3, 3) and conv1.padding == (1, 1):
            conv1, conv2 = WinogradConv3x3(conv1), WinogradConv3x3(conv2)
        self.conv1, self.conv2 = conv1, conv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        out = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(out)) + x


def _fold_resnet(resnet: ResNet) -> None:
    resnet.conv1 = fuse_conv_bn_eval(resnet.conv1, resnet.bn1)
    resnet.bn1 = nn.Identity()
    for layer in (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4):
        for block in layer:
            for index in (1, 2, 3):
                conv, bn = getattr(block, f"conv{index}", None), getattr(block, f"bn{index}", None)
                if conv is not None and bn is not None:
                    setattr(block, f"conv{index}", fuse_conv_bn_eval(conv, bn))
                    setattr(block, f"bn{index}", nn.Identity())
            if block.downsample is not None:
                conv, bn = block.downsample
                block.downsample = fuse_conv_bn_eval(conv, bn)


def _replacement(module: nn.Module, winograd: bool) -> nn.Module | None:
    if isinstance(module, UpBlock2d):
        return nn.Sequential(SubpixelUpConv(fuse_conv_bn_eval(module.conv, module.norm)), nn.ReLU())
    if isinstance(module, DownBlock2d):
        return ConvReLU(SmallMapConv(fuse_conv_bn_eval(module.conv, module.norm)), pool=True)
    if isinstance(module, SameBlock2d):
        return ConvReLU(fuse_conv_bn_eval(module.conv, module.norm))
    if isinstance(module, ResBlock2d):
        return FusedResBlock(module, winograd)
    return None


def _rewrite(parent: nn.Module, winograd: bool) -> None:
    # By name, so that in place each replaced child is freed before its next sibling is fused.
    for name in [name for name, _ in parent.named_children()]:
        child = getattr(parent, name)
        if isinstance(child, ResNet):
            _fold_resnet(child)
            continue
        replacement = _replacement(child, winograd)
        if replacement is not None:
            setattr(parent, name, replacement)
        else:
            _rewrite(child, winograd)


def _bake_spectral_norm(network: nn.Module) -> None:
    for module in network.modules():
        hooks = [h for h in module._forward_pre_hooks.values() if type(h).__name__ == "SpectralNorm"]
        if hooks:
            torch.nn.utils.remove_spectral_norm(module)


@torch.no_grad()
def fuse_for_inference(network: nn.Module, winograd: bool = True, in_place: bool = False) -> nn.Module:
    """``network`` (a copy, by default) in eval mode with batch norms folded and faster, equivalent convolutions.

    ``winograd=False`` keeps residual-block convolutions direct (for ONNX export, which has no
    strided views). ``in_place=True`` rewrites ``network`` itself, which is then for running only:
    each replaced module is freed as its twin is made, so the weights are never held twice.
    """
    fused = (network if in_place else copy.deepcopy(network)).eval()
    _bake_spectral_norm(fused)
    _rewrite(fused, winograd)
    for parameter in fused.parameters():
        parameter.requires_grad_(False)
    return fused
