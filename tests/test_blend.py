"""GeneratorConfig.blend_deformed: the plain decoder's output blended with the warped source image."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dagan.cli import main
from dagan.errors import DaganError
from dagan.io.checkpoint import infer_model_config, read_dagan_checkpoint
from dagan.nn.common import Keypoints
from dagan.pipelines.networks import build_generator, load_animation_networks

from .conftest import tiny_model_config, write_aligned_training_checkpoint


def _generators(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same tiny generator with and without the blend head (shared weights otherwise)."""
    config = tiny_model_config().generator
    torch.manual_seed(seed)
    blended = build_generator(dataclasses.replace(config, blend_deformed=True)).eval()
    plain = build_generator(config).eval()
    state = {k: v for k, v in blended.state_dict().items() if not k.startswith("blend.")}
    plain.load_state_dict(state)
    return blended, plain


def _inputs(seed: int = 0) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    source = torch.rand(2, 3, 64, 64, generator=gen)
    depth = torch.rand(2, 1, 64, 64, generator=gen)
    kp_source = Keypoints(torch.rand(2, 5, 2, generator=gen) * 1.6 - 0.8, torch.eye(2).expand(2, 5, 2, 2).clone())
    kp_driving = Keypoints(kp_source.value + 0.1 * torch.randn(2, 5, 2, generator=gen), kp_source.jacobian)
    return source, kp_driving, kp_source, depth


@pytest.mark.parametrize("bias", [30.0, -30.0])
def test_the_mask_picks_the_warped_source_or_the_decoders_image(bias):
    blended, plain = _generators()
    with torch.no_grad():
        blended.blend.weight.zero_()
        blended.blend.bias.fill_(bias)
        out = blended(*_inputs())
        reference = plain(*_inputs())
    assert torch.allclose(out["prediction"], reference["deformed"] if bias > 0 else reference["prediction"], atol=1e-6)
    assert not torch.allclose(reference["deformed"], reference["prediction"], atol=1e-2)
    assert out["blend_mask"].shape == (2, 1, 64, 64)


def test_the_blend_is_a_per_pixel_mix_of_the_warped_source_and_the_decoders_image():
    blended, plain = _generators(seed=3)
    with torch.no_grad():
        out = blended(*_inputs(seed=3))
        reference = plain(*_inputs(seed=3))
    mask = out["blend_mask"]
    assert 0 < float(mask.min()) and float(mask.max()) < 1 and float(mask.std()) > 1e-3
    expected = mask * reference["deformed"] + (1 - mask) * reference["prediction"]
    assert torch.allclose(out["prediction"], expected, atol=1e-6)


def test_the_image_loss_reaches_the_motion_through_the_warped_source():
    blended, _ = _generators()
    with torch.no_grad():
        blended.blend.weight.zero_()
        blended.blend.bias.fill_(30.0)  # the decoder's image has no weight: only the warp is left
    blended.train()
    out = blended(*_inputs())
    out["prediction"].mean().backward()
    motion_grads = [p.grad for p in blended.dense_motion_network.parameters() if p.grad is not None]
    assert motion_grads and sum(float(g.abs().sum()) for g in motion_grads) > 0


def test_the_mask_itself_learns_from_the_image_loss():
    blended, _ = _generators(seed=1)
    blended.train()
    out = blended(*_inputs(seed=1))
    (out["prediction"] - torch.rand_like(out["prediction"])).abs().mean().backward()
    assert blended.blend.weight.grad is not None and float(blended.blend.weight.grad.abs().sum()) > 0


def test_the_spade_decoder_refuses_the_blend():
    config = dataclasses.replace(tiny_model_config("spade").generator, blend_deformed=True)
    with pytest.raises(DaganError, match="blend_deformed"):
        build_generator(config)


def test_the_blend_head_is_read_from_the_weights_through_every_format(tiny_files, tmp_path):
    trained = write_aligned_training_checkpoint(tmp_path / "trained.pth.tar", blend_deformed=True)
    assert infer_model_config(read_dagan_checkpoint(trained)).generator.blend_deformed is True
    st = tmp_path / "model.safetensors"
    argv = ["convert", str(trained), str(st), "--depth-weights", str(tiny_files["depth"]), "--half"]
    assert main([*argv, "--inference-only"]) == 0
    back = tmp_path / "back.pth.tar"
    assert main(["convert", str(st), str(back)]) == 0
    for path, depth in ((trained, tiny_files["depth"]), (st, None), (back, tiny_files["depth"])):
        generator = load_animation_networks(path, depth).generator
        assert generator.blend is not None and generator.config.blend_deformed, path
    assert load_animation_networks(tiny_files["checkpoint"], tiny_files["depth"]).generator.blend is None
