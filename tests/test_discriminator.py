"""The discriminator: in-place leaky ReLU, frozen path and heatmaps without subnormals change no value or gradient."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from dagan.config import DenseMotionConfig, DiscriminatorConfig
from dagan.nn.common import Keypoints, kp2gaussian
from dagan.nn.dense_motion import DenseMotionNetwork
from dagan.nn.discriminator import Discriminator, DiscriminatorBlock

from .original_blocks import original_discriminator_block, original_kp2gaussian
from .saved_tensors import saved_bytes


@pytest.mark.parametrize(("norm", "pool"), [(False, True), (True, True), (True, False)])
def test_block_matches_the_out_of_place_formulation(norm, pool):
    torch.manual_seed(0)
    block = DiscriminatorBlock(5, 8, norm=norm, pool=pool, sn=False)
    x = torch.randn(2, 5, 17, 17, requires_grad=True)
    grad_out = None
    results = []
    for forward in (block, lambda t: original_discriminator_block(block, t)):
        block.zero_grad()
        x.grad = None
        out = forward(x)
        grad_out = torch.randn_like(out, generator=torch.Generator().manual_seed(1)) if grad_out is None else grad_out
        out.backward(grad_out)
        results.append((out.detach(), x.grad.clone(), block.conv.weight.grad.clone()))
    for ours, theirs in zip(*results, strict=True):
        assert torch.equal(ours, theirs)
    assert (results[0][0] < 0).any()  # the negative slope was exercised


def _frozen_block(norm: bool, pool: bool) -> DiscriminatorBlock:
    torch.manual_seed(0)
    block = DiscriminatorBlock(5, 8, norm=norm, pool=pool, sn=False)
    if norm:  # an affine that is not the identity, so that its backward is exercised
        torch.nn.init.uniform_(block.norm.weight, 0.5, 1.5)
        torch.nn.init.uniform_(block.norm.bias, -0.5, 0.5)
    return block.requires_grad_(False)


@pytest.mark.parametrize("size", [17, 20, 35])
@pytest.mark.parametrize(("norm", "pool"), [(False, True), (True, True), (True, False)])
def test_frozen_block_keeps_less_for_backward_and_gives_the_same_input_gradient(norm, pool, size):
    block = _frozen_block(norm, pool)
    image = torch.randn(2, 5, size, size)
    results = []
    for forward in (block, block._plain_forward):
        x = image.clone().requires_grad_(True)
        out, kept = saved_bytes(lambda forward=forward, x=x: forward(x))
        grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        out.backward(grad_out)
        results.append((out.detach(), x.grad, kept, out.grad_fn))
    (frozen, frozen_grad, frozen_kept, frozen_fn), (plain, plain_grad, plain_kept, plain_fn) = results
    assert type(frozen_fn).__name__ == "_FrozenBlockBackward" and type(plain_fn).__name__ != type(frozen_fn).__name__
    assert torch.equal(frozen, plain) and torch.equal(frozen_grad, plain_grad)
    assert (frozen < 0).any() and (frozen > 0).any()  # both slopes of the leaky ReLU were exercised
    assert frozen_kept < (0.6 if norm else 0.3) * plain_kept


def test_trainable_or_spectral_norm_blocks_and_inputs_without_gradient_take_the_plain_path():
    x = torch.randn(1, 5, 12, 12, requires_grad=True)
    trainable = DiscriminatorBlock(5, 8, norm=True, pool=True, sn=False)
    trainable(x).sum().backward()
    assert trainable.conv.weight.grad is not None and trainable.norm.weight.grad is not None
    spectral = DiscriminatorBlock(5, 8, norm=True, pool=True, sn=True).requires_grad_(False)
    assert type(spectral(x).grad_fn).__name__ != "_FrozenBlockBackward"
    frozen = _frozen_block(norm=True, pool=True)
    assert frozen(x.detach()).grad_fn is None


def _keypoints(batch: int, num_kp: int, seed: int) -> torch.Tensor:
    # Some keypoints up to 0.2 outside the [-1, 1] frame, as a detector's can be. (One more than
    # 1.3 beyond the frame would have a heatmap of tails only, whose keypoint gradient goes from
    # about 1e-37 to zero: no detector or discriminator input gets there.)
    return (torch.rand(batch, num_kp, 2, generator=torch.Generator().manual_seed(seed)) * 2.4 - 1.2).requires_grad_()


def _subnormal(heatmap: torch.Tensor) -> torch.Tensor:
    return (heatmap > 0) & (heatmap < torch.finfo(torch.float32).tiny)


def _has_subnormal_tails(value: torch.Tensor, height: int, width: int) -> bool:
    return bool(_subnormal(original_kp2gaussian(value.detach(), height, width, 0.01)).any())


def test_keypoint_heatmaps_hold_no_subnormal_floats_and_keep_every_normal_value():
    value = _keypoints(2, 15, 0)
    heatmap = kp2gaussian(value, 96, 80, 0.01)
    original = original_kp2gaussian(value, 96, 80, 0.01)
    assert _subnormal(original).any(), "the fixture must have subnormal tails"
    assert not _subnormal(heatmap).any()
    normal = ~_subnormal(original)
    assert torch.equal(heatmap[normal], original[normal])


def _with_original_heatmaps(
    monkeypatch: pytest.MonkeyPatch, module: object, run: Callable[[], list[torch.Tensor]]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    flushed = run()
    monkeypatch.setattr(module, "kp2gaussian", original_kp2gaussian)
    return flushed, run()


def test_discriminator_outputs_and_gradients_are_the_same_without_subnormal_heatmaps(monkeypatch):
    import dagan.nn.discriminator as discriminator_module

    torch.manual_seed(0)
    discriminator = Discriminator(DiscriminatorConfig())
    image = torch.rand(2, 3, 128, 128, requires_grad=True)
    value = _keypoints(2, 15, 1)
    assert _has_subnormal_tails(value, 128, 128), "the fixture must have subnormal tails"

    def run() -> list[torch.Tensor]:
        feature_maps, prediction = discriminator(image, value)
        loss = sum(m.square().mean() for m in feature_maps) + prediction.mean()
        parameters = list(discriminator.parameters())
        return [*feature_maps, prediction, *torch.autograd.grad(loss, [image, value, *parameters])]

    flushed, original = _with_original_heatmaps(monkeypatch, discriminator_module, run)
    for a, b in zip(flushed, original, strict=True):
        assert torch.equal(a, b)


def test_dense_motion_and_its_keypoint_gradients_are_the_same_without_subnormal_heatmaps(monkeypatch):
    import dagan.nn.dense_motion as dense_motion_module

    torch.manual_seed(0)
    network = DenseMotionNetwork(DenseMotionConfig(num_kp=10, block_expansion=16, max_features=64, num_blocks=3))
    image = torch.rand(2, 3, 128, 128)
    driving, source = _keypoints(2, 10, 2), _keypoints(2, 10, 3)
    # The dense motion network's heatmaps are at a quarter of the frame's size.
    assert _has_subnormal_tails(driving, 32, 32) and _has_subnormal_tails(source, 32, 32)

    def run() -> list[torch.Tensor]:
        out = network(image, Keypoints(driving), Keypoints(source))
        loss = out["deformation"].square().mean() + out["occlusion_map"].mean()
        return [out["deformation"], out["occlusion_map"], *torch.autograd.grad(loss, [driving, source])]

    flushed, original = _with_original_heatmaps(monkeypatch, dense_motion_module, run)
    for a, b in zip(flushed, original, strict=True):
        assert torch.equal(a, b)
