"""Exact inference rewrites: folded batch norms, sub-pixel up-convolutions, channels-last, fused animation."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dagan.config import InferenceConfig
from dagan.errors import DaganError
from dagan.io.image import read_image
from dagan.io.video import read_video
from dagan.nn import KeypointDetector
from dagan.nn.common import UpBlock2d
from dagan.nn.face_depth import FaceDepthNetwork
from dagan.nn.fuse import SmallMapConv, SubpixelUpConv, WinogradConv3x3, fuse_for_inference
from dagan.pipelines.animate import Animator
from dagan.pipelines.networks import build_generator, load_animation_networks

from .conftest import tiny_model_config
from .random_weights import randomise_


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(2, 6, 5, 7), (1, 3, 1, 1), (1, 4, 8, 8)])
def test_subpixel_conv_equals_nearest_upsampling_then_conv(bias, shape):
    torch.manual_seed(0)
    conv = nn.Conv2d(shape[1], 5, 3, padding=1, bias=bias).double()
    x = torch.randn(*shape, dtype=torch.float64)
    expected = conv(F.interpolate(x, scale_factor=2, mode="nearest"))
    got = SubpixelUpConv(conv, min_pixels=0)(x)  # the sub-pixel path even for the smallest maps
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-12, rtol=0)


def test_subpixel_conv_needs_fewer_multiply_adds():
    conv = nn.Conv2d(16, 8, 3, padding=1)
    h = w = 64
    plain = conv.weight.numel() * (2 * h) * (2 * w)  # 3x3 over the upsampled map
    up = SubpixelUpConv(conv)
    with torch.no_grad():
        up(torch.rand(1, 16, h, w))
    subpixel = up.weight.numel() * (h + 1) * (w + 1)
    assert plain / subpixel > 2.15  # 2.25x, less the one-pixel border


def _storages(module: nn.Module) -> dict[int, int]:
    tensors = [*module.parameters(), *module.buffers()]
    return {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}


def test_layers_hold_only_the_weights_of_the_maps_they_see():
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 16, 3, padding=1).to(memory_format=torch.channels_last)
    plain_up = nn.Conv2d(32, 16, 3, padding=1)
    weight_bytes, bias_bytes = conv.weight.numel() * 4, 16 * 4
    small, up = SmallMapConv(conv), SubpixelUpConv(plain_up)
    tiny, large = torch.rand(2, 32, 4, 4), torch.rand(2, 32, 16, 16)
    with torch.no_grad():
        expected = {
            "small tiny": F.conv2d(tiny, conv.weight, conv.bias, padding=1),
            "small large": F.conv2d(large, conv.weight, conv.bias, padding=1),
            "up tiny": plain_up(F.interpolate(tiny, scale_factor=2)),
            "up large": plain_up(F.interpolate(large, scale_factor=2)),
        }
    with torch.inference_mode():  # forms built in inference mode must still work outside it
        small(tiny), up(tiny)
    # The matrix is made from the channels-last weight (a copy), then the weight becomes its view.
    assert sum(_storages(small).values()) == weight_bytes + bias_bytes
    assert up.weight is None  # a 4x4 map never takes the sub-pixel path: no 16/9-size weights
    assert sum(_storages(up).values()) == weight_bytes + bias_bytes
    with torch.no_grad():
        got = {"small tiny": small(tiny), "small large": small(large), "up tiny": up(tiny), "up large": up(large)}
    assert up.weight is not None  # built when the first large map came
    for name, value in expected.items():
        assert torch.allclose(got[name], value, atol=1e-5), name


def test_weight_forms_built_under_autocast_stay_float32():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 4, 3, padding=1)
    small, up = SmallMapConv(conv), SubpixelUpConv(nn.Conv2d(8, 4, 3, padding=1))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        small(torch.rand(1, 8, 4, 4)), up(torch.rand(1, 8, 16, 16))
    assert small.matrix.dtype == torch.float32 and up.weight.dtype == torch.float32
    x = torch.rand(1, 8, 16, 16)
    with torch.no_grad():  # and run without autocast afterwards
        assert torch.allclose(up(x), up.conv.conv(F.interpolate(x, scale_factor=2)), atol=1e-5)


def test_subpixel_conv_rejects_other_convolutions():
    with pytest.raises(ValueError, match="3x3"):
        SubpixelUpConv(nn.Conv2d(4, 4, 5, padding=2))


def _randomised(net: nn.Module, seed: int) -> nn.Module:
    return randomise_(net, torch.Generator().manual_seed(seed)).eval()


def _batch_norms(net: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def test_fused_keypoint_detector_matches_and_has_no_foldable_batch_norm():
    config = tiny_model_config().kp_detector
    net = _randomised(KeypointDetector(config), 1)
    fused = fuse_for_inference(net)
    x = torch.rand(2, 4, 64, 64)
    with torch.no_grad():
        a, b = net(x), fused(x)
    assert _batch_norms(net) > 0 and _batch_norms(fused) == 0
    assert not any(isinstance(m, UpBlock2d) for m in fused.modules())
    assert torch.allclose(a.value, b.value, atol=1e-5)
    assert torch.allclose(a.jacobian, b.jacobian, atol=1e-5)
    assert _batch_norms(net) > 0  # the original is left as it was


def test_fused_depth_network_matches():
    net = _randomised(FaceDepthNetwork(tiny_model_config().depth), 3)
    fused = fuse_for_inference(net)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a, b = net(x), fused(x)
    assert _batch_norms(fused) == 0
    assert (a - b).abs().max() < 1e-4


@pytest.mark.parametrize("variant", ["depth_aware", "spade"])
def test_fused_generator_matches(variant):
    config = tiny_model_config(variant)
    generator = _randomised(build_generator(config.generator), 4)
    kp = _randomised(KeypointDetector(config.kp_detector), 5)
    fused = fuse_for_inference(generator)
    torch.manual_seed(0)
    source, depth = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
    driving = torch.rand(2, 4, 64, 64)
    with torch.no_grad():
        kp_source, kp_driving = kp(torch.cat([source, depth], 1)), kp(driving)
        a = generator(source, kp_driving, kp_source, depth)["prediction"]
        b = fused(source, kp_driving, kp_source, depth)["prediction"]
    remaining = 1 if variant == "depth_aware" else 0  # each residual block's first norm follows a sum
    assert _batch_norms(fused) == remaining * config.generator.num_bottleneck_blocks
    assert (a - b).abs().max() < 1e-5
    assert (a[0] - a[1]).abs().max() > 1e-3  # the outputs depend on the driving keypoints


@pytest.mark.parametrize(
    "inference",
    [
        InferenceConfig(),
        InferenceConfig(channels_last=False, cpu_workers=1),
        InferenceConfig(fuse=False, cpu_workers=1),
        InferenceConfig(fuse=False, channels_last=False, cpu_workers=3),
    ],
    ids=["default", "fused", "channels-last", "three-workers"],
)
@pytest.mark.slow
def test_each_exact_speedup_gives_the_plain_frames(tiny_files, inference):
    threads = torch.get_num_threads()
    plain = Animator.from_checkpoint(
        tiny_files["checkpoint"], tiny_files["depth"], "cpu", InferenceConfig(fuse=False, channels_last=False)
    )
    plain.networks.generator.AttnModule.mode = "matrix"
    fast = Animator.from_checkpoint(tiny_files["checkpoint"], tiny_files["depth"], "cpu", inference)
    source = read_image(tiny_files["source"])
    frames, _ = read_video(tiny_files["driving"])
    a = np.stack([f.prediction for f in plain.animate(source, frames, batch_size=1)])
    b = np.stack([f.prediction for f in fast.animate(source, frames, batch_size=3)])
    assert a.shape == b.shape
    assert np.abs(a - b).max() < 1e-4
    assert np.abs(a[0] - a[-1]).max() > 1e-3
    assert torch.get_num_threads() == threads  # the workers' share of the cores is given back


def test_in_place_rewrite_gives_the_copys_frames_and_keeps_no_plain_layers(tiny_files):
    source = read_image(tiny_files["source"])
    frames, _ = read_video(tiny_files["driving"])
    given = load_animation_networks(tiny_files["checkpoint"], tiny_files["depth"])
    copied = Animator(given, "cpu")
    assert any(isinstance(m, UpBlock2d) for m in given.generator.modules())  # the caller's networks are untouched
    owned = Animator.from_checkpoint(tiny_files["checkpoint"], tiny_files["depth"], "cpu")
    a = np.stack([f.prediction for f in copied.animate(source, frames)])
    b = np.stack([f.prediction for f in owned.animate(source, frames)])
    assert np.array_equal(a, b)
    in_place = load_animation_networks(tiny_files["checkpoint"], tiny_files["depth"])
    animator = Animator(in_place, "cpu", own_networks=True)
    assert not any(isinstance(m, UpBlock2d) for m in in_place.generator.modules())  # rewritten, not copied
    assert np.array_equal(np.stack([f.prediction for f in animator.animate(source, frames)]), a)


@pytest.mark.slow
def test_cpu_workers_default_to_one_per_core_and_only_on_cpu(tiny_files):
    animator = Animator.from_checkpoint(tiny_files["checkpoint"], tiny_files["depth"], "cpu")
    assert animator.cpu_workers() == min(torch.get_num_threads(), 4)
    threads = torch.get_num_threads()
    frames, _ = read_video(tiny_files["driving"])
    running = animator.animate(read_image(tiny_files["source"]), frames, batch_size=1)
    next(running)
    assert torch.get_num_threads() == threads  # workers take their share; the caller keeps its threads
    running.close()
    assert torch.get_num_threads() == threads
    compiled = InferenceConfig(compile=True)
    assert Animator.from_checkpoint(tiny_files["checkpoint"], tiny_files["depth"], "cpu", compiled).cpu_workers() == 1
    with pytest.raises(DaganError, match="cpu_workers"):
        Animator.from_checkpoint(tiny_files["checkpoint"], tiny_files["depth"], "cpu", InferenceConfig(cpu_workers=-1))


@pytest.mark.slow
def test_bf16_runs_and_stays_close(tiny_files):
    exact = Animator.from_checkpoint(tiny_files["checkpoint"], tiny_files["depth"], "cpu")
    bf16 = Animator.from_checkpoint(
        tiny_files["checkpoint"], tiny_files["depth"], "cpu", InferenceConfig(precision="bf16")
    )
    source = read_image(tiny_files["source"])
    frames, _ = read_video(tiny_files["driving"])
    a = np.stack([f.prediction for f in exact.animate(source, frames[:2])])
    b = np.stack([f.prediction for f in bf16.animate(source, frames[:2])])
    assert b.dtype == np.float32 and np.isfinite(b).all()
    difference = np.abs(a - b).max()
    assert 0 < difference < 0.2  # bf16 really ran (not bit-equal), and is still the same picture


@pytest.mark.parametrize("shape", [(2, 16, 12, 8), (1, 8, 13, 9), (1, 4, 1, 2), (3, 32, 64, 64)])
def test_winograd_conv_equals_direct_convolution(shape):
    torch.manual_seed(1)
    conv = nn.Conv2d(shape[1], 24, 3, padding=1)
    x = torch.randn(*shape)
    expected = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
    got = WinogradConv3x3(conv)(x)
    assert got.shape == expected.shape
    assert (got.double() - expected).abs().max() < 1e-5 * expected.abs().max()
    channels_last = WinogradConv3x3(conv)(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(channels_last, got, atol=1e-6)


def test_winograd_conv_needs_fewer_multiply_adds():
    conv = WinogradConv3x3(nn.Conv2d(256, 256, 3, padding=1))
    direct = 256 * 256 * 9 * 64 * 64
    winograd = conv.kernels.numel() * (64 // 4) * (64 // 4)  # 36 products per channel pair and 4x4 tile
    assert direct / winograd == 4


def test_winograd_rejects_other_convolutions():
    with pytest.raises(ValueError, match="3x3"):
        WinogradConv3x3(nn.Conv2d(4, 4, 3, padding=1, stride=2))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None, reason="torch.compile on CPU needs a C compiler")
def test_compiled_animation_gives_the_same_frames(tiny_files):
    exact = Animator.from_checkpoint(tiny_files["checkpoint"], tiny_files["depth"], "cpu")
    compiled = Animator.from_checkpoint(
        tiny_files["checkpoint"], tiny_files["depth"], "cpu", InferenceConfig(compile=True)
    )
    # Weight forms are built by one frame before compiling: inside the graph they would break it.
    lazy = [m for m in compiled.networks.generator.modules() if isinstance(m, SmallMapConv | SubpixelUpConv)]

    def built() -> list[bool]:
        return [(m.matrix if isinstance(m, SmallMapConv) else m.weight) is not None for m in lazy]

    before = built()
    assert any(before)
    source = read_image(tiny_files["source"])
    frames, _ = read_video(tiny_files["driving"])
    a = np.stack([f.prediction for f in exact.animate(source, frames[:3])])
    b = np.stack([f.prediction for f in compiled.animate(source, frames[:3])])
    assert np.abs(a - b).max() < 1e-4
    assert built() == before  # the frames needed no form that was not there before compiling


@pytest.mark.parametrize("size", [1, 2, 5, 8, 9, 16])
def test_small_map_conv_equals_the_convolution(size):
    torch.manual_seed(2)
    conv = nn.Conv2d(12, 7, 3, padding=1)
    x = torch.randn(2, 12, size, size)
    expected = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
    got = SmallMapConv(conv, max_pixels=64)(x)  # a GEMM up to 8x8, the convolution above
    assert got.shape == expected.shape
    assert (got.double() - expected).abs().max() < 1e-5


def test_small_map_conv_rejects_strided_convolutions():
    with pytest.raises(ValueError, match="stride-1"):
        SmallMapConv(nn.Conv2d(4, 4, 3, padding=1, stride=2))
