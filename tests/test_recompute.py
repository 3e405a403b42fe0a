"""Recomputed blocks (``dagan train --low-memory``): the same losses, gradients and buffers, less memory kept."""

from __future__ import annotations

import copy

import pytest
import torch

from dagan.cli import main
from dagan.nn import KeypointDetector
from dagan.nn.common import Keypoints
from dagan.pipelines import memory
from dagan.pipelines.networks import build_generator
from dagan.pipelines.recompute import recompute_blocks, recompute_in_backward

from .conftest import tiny_model_config
from .test_train import TINY_CONFIG, _options, depth_dir, synth_data  # noqa: F401 (fixtures)


def _inputs(batch: int, size: int, num_kp: int, seed: int) -> tuple:
    g = torch.Generator().manual_seed(seed)
    source = torch.rand(batch, 3, size, size, generator=g)
    depth = torch.rand(batch, 1, size, size, generator=g)

    def keypoints() -> Keypoints:
        value = torch.rand(batch, num_kp, 2, generator=g) * 1.6 - 0.8
        jacobian = torch.eye(2).expand(batch, num_kp, 2, 2) + 0.1 * torch.randn(batch, num_kp, 2, 2, generator=g)
        return Keypoints(value, jacobian)

    return source, keypoints(), keypoints(), depth


def _networks(variant: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    config = tiny_model_config(variant)
    generator = build_generator(config.generator).train()
    if variant == "spade":
        # A few steps of power iteration, so the spectral norms' vectors are not at their start.
        with torch.no_grad():
            for _ in range(3):
                generator(*_inputs(2, 64, config.generator.dense_motion.num_kp, seed=9))
    return generator, copy.deepcopy(generator)


def _step(generator: torch.nn.Module, inputs: tuple) -> dict[str, torch.Tensor]:
    out = generator(*inputs)
    weights = torch.linspace(-1, 1, out["prediction"].numel()).view_as(out["prediction"])
    ((out["prediction"] * weights).sum() + out["mask"].square().sum()).backward()
    return out


@pytest.mark.parametrize("variant", ["depth_aware", "spade"])
def test_recomputed_generator_gives_the_same_outputs_gradients_and_buffers(variant):
    plain, recomputed = _networks(variant)
    # The outermost blocks only: the encoders' five, the hourglass, the attention, the decoder's.
    assert recompute_blocks(recomputed) == {"depth_aware": 11, "spade": 13}[variant]
    hourglass = recomputed.dense_motion_network.hourglass
    assert "forward" in vars(hourglass)
    assert not any("forward" in vars(m) for m in hourglass.modules() if m is not hourglass)
    num_kp = plain.config.dense_motion.num_kp
    for seed in (1, 2):  # twice: the second step starts from buffers both updated once
        inputs = _inputs(2, 64, num_kp, seed)
        a, b = _step(plain, inputs), _step(recomputed, inputs)
        assert torch.equal(a["prediction"], b["prediction"])
    grads = {name: p.grad for name, p in recomputed.named_parameters()}
    for name, p in plain.named_parameters():
        assert p.grad is not None and torch.equal(p.grad, grads[name]), name
    buffers = dict(recomputed.named_buffers())
    assert set(buffers) == {name for name, _ in plain.named_buffers()}
    for name, buffer in plain.named_buffers():
        # Running statistics updated once a step, spectral-norm vectors advanced once: not twice.
        assert torch.equal(buffer, buffers[name]), name
    assert recomputed.state_dict().keys() == plain.state_dict().keys()


def test_recomputed_blocks_run_once_without_gradients():
    plain, recomputed = _networks("depth_aware")
    recompute_blocks(recomputed)
    calls, last_calls = [], []
    recomputed.bottleneck[0].conv1.register_forward_hook(lambda *_: calls.append(1))
    recomputed.bottleneck[0].conv2.register_forward_hook(lambda *_: last_calls.append(1))
    inputs = _inputs(1, 64, plain.config.dense_motion.num_kp, seed=3)
    with torch.no_grad():
        assert torch.equal(plain.eval()(*inputs)["prediction"], recomputed.eval()(*inputs)["prediction"])
    assert len(calls) == len(last_calls) == 1
    _step(recomputed.train(), inputs)
    assert len(calls) == 3  # forward, then once more in backward
    # The second convolution's output is saved by nothing: the recomputation stops at its input.
    assert len(last_calls) == 2


def test_a_deep_copy_recomputes_with_its_own_buffers():
    plain, recomputed = _networks("spade")
    recompute_blocks(recomputed)
    copied = copy.deepcopy(recomputed)
    before = {name: buffer.clone() for name, buffer in recomputed.named_buffers()}
    inputs = _inputs(2, 64, plain.config.dense_motion.num_kp, seed=4)
    a, b = _step(plain, inputs), _step(copied, inputs)
    assert torch.equal(a["prediction"], b["prediction"])
    for name, buffer in recomputed.named_buffers():
        assert torch.equal(buffer, before[name]), name  # the original was not touched
    copied_buffers = dict(copied.named_buffers())
    for name, buffer in plain.named_buffers():
        assert torch.equal(buffer, copied_buffers[name]), name


def test_a_kept_graph_recomputes_on_each_backward_pass():
    plain, recomputed = _networks("depth_aware")
    recompute_blocks(recomputed)
    inputs = _inputs(2, 64, plain.config.dense_motion.num_kp, seed=6)
    grads = []
    for network in (plain, recomputed):
        out = network(*inputs)["prediction"].square().sum()
        out.backward(retain_graph=True)
        out.backward()  # accumulates a second, equal gradient
        grads.append({name: p.grad for name, p in network.named_parameters()})
    for name, grad in grads[0].items():
        assert torch.equal(grad, grads[1][name]), name
    for name, buffer in plain.named_buffers():
        assert torch.equal(buffer, dict(recomputed.named_buffers())[name]), name


@pytest.mark.skipif(memory.heap_usage() is None, reason="needs glibc 2.33+ (mallinfo2) serving malloc")
def test_recomputed_networks_keep_far_less_for_backward():
    """What a forward leaves alive for backward, measured on the heap: the generator and keypoint
    detector of the tiny model at batch 4."""
    kept = {}
    for mode in ("plain", "recomputed"):
        torch.manual_seed(0)
        config = tiny_model_config()
        generator = build_generator(config.generator).train()
        kp_detector = KeypointDetector(config.kp_detector).train()
        if mode == "recomputed":
            recompute_blocks(generator)
            recompute_blocks(kp_detector)
        source, _, _, depth = _inputs(4, 64, config.kp_detector.num_kp, seed=5)
        before = memory.heap_usage().in_use
        kp = kp_detector(torch.cat([source, depth], dim=1))
        out = generator(source, kp, kp, depth)
        kept[mode] = memory.heap_usage().in_use - before
        out["prediction"].sum().backward()
        del out, kp
    assert kept["recomputed"] < 0.5 * kept["plain"], kept


@pytest.mark.slow
def test_low_memory_training_takes_the_same_steps(synth_data, depth_dir, tmp_path):  # noqa: F811
    from dagan.pipelines.train import Trainer

    losses, states = {}, {}
    for low_memory in (False, True):
        trainer = Trainer(_options(synth_data, tmp_path / str(low_memory), depth_dir, low_memory=low_memory))
        recomputed = [trainer.generator.first, trainer.generator.bottleneck[0], trainer.kp_detector.predictor]
        assert all(("forward" in vars(block)) == low_memory for block in recomputed)
        trainer.start_training()
        batch = next(iter(trainer.loader()))
        losses[low_memory] = []
        for _ in range(2):
            losses[low_memory].append(trainer.train_step(batch["source"], batch["driving"]))
            trainer.step += 1
        states[low_memory] = {**trainer.generator.state_dict(), **trainer.kp_detector.state_dict()}
    assert losses[True] == losses[False]
    for key, value in states[False].items():
        assert torch.equal(value, states[True][key]), key


def test_low_memory_and_compile_together_are_refused(synth_data, depth_dir, tmp_path, capsys):  # noqa: F811
    code = main(["train", "--config", str(TINY_CONFIG), "--data", str(synth_data), "--out", str(tmp_path / "run"),
                 "--depth-weights", str(depth_dir), "--low-memory", "--compile", "--device", "cpu",
                 "--max-steps", "1", "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--low-memory" in err and "Traceback" not in err


def test_recomputed_tensors_are_freed_without_the_garbage_collector(monkeypatch):
    """A reference cycle would hold each step's recomputed maps until the collector happened to run."""
    import gc
    import weakref

    from dagan.pipelines import recompute

    given_out = []
    unpack = recompute._Recomputation.unpack

    def tracked(self, index):
        tensor = unpack(self, index)
        given_out.append(weakref.ref(tensor))
        return tensor

    monkeypatch.setattr(recompute._Recomputation, "unpack", tracked)
    _, network = _networks("depth_aware")
    recompute_blocks(network)
    inputs = _inputs(2, 64, network.config.dense_motion.num_kp, seed=8)
    gc.collect()
    gc.disable()
    try:
        _step(network, inputs)
        assert len(given_out) > 50
        assert [ref for ref in given_out if ref() is not None] == []
    finally:
        gc.enable()


def test_an_input_changed_in_place_before_backward_is_refused():
    block = torch.nn.Sequential(torch.nn.Conv2d(2, 2, 3), torch.nn.Tanh())
    recompute_in_backward(block)
    x = torch.rand(1, 2, 6, 6, requires_grad=True)
    source = x * 1
    out = block(source)
    source.add_(1)
    with pytest.raises(RuntimeError, match="modified in place"):
        out.sum().backward()


class _SecondCallDiffers(torch.nn.Module):
    """A block whose forward takes another path when it runs again: recomputing it would be wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x.exp() if self.calls == 1 else x.flatten().sin().view_as(x)


def test_a_recomputation_that_saves_different_tensors_is_refused():
    block = _SecondCallDiffers()
    recompute_in_backward(block)
    out = block(torch.rand(2, 3, requires_grad=True))
    with pytest.raises(RuntimeError, match="differ"):
        out.sum().backward()
