"""SPADEDepthAwareGenerator has no golden file, so it is checked two other ways:

- its warping half is shared with DepthAwareGenerator, so with the golden weights in those
  keys it must reproduce the golden mask, occlusion map and deformed image;
- its decoder is re-derived independently here (plain tensor maths, spectral norm as
  W / (u . W v) with the stored vectors) and must agree with the module.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dagan.config import ModelConfig
from dagan.nn import Keypoints, SPADEDepthAwareGenerator

SPADE_CONFIG = dataclasses.replace(ModelConfig().with_num_kp(15).generator, variant="spade")


@pytest.fixture(scope="module")
def spade(reference):
    gen = SPADEDepthAwareGenerator(SPADE_CONFIG)
    gen.load_state_dict(reference.make_state_dict(reference.load_manifest("generator_spade"), 21), strict=True)
    return gen.eval()


@pytest.mark.slow
def test_shared_warping_matches_golden(reference, golden, golden_state_dicts):
    gen = SPADEDepthAwareGenerator(SPADE_CONFIG)
    state = reference.make_state_dict(reference.load_manifest("generator_spade"), 21)
    shared = {k: v for k, v in golden_state_dicts["generator"].items() if k in state}
    assert len(shared) > 100
    state.update(shared)
    gen.load_state_dict(state, strict=True)
    gen.eval()
    t = {k: torch.from_numpy(v) for k, v in golden.items() if isinstance(v, np.ndarray)}
    with torch.inference_mode():
        out = gen(
            t["source"],
            Keypoints(t["kp_norm_value"], t["kp_norm_jacobian"]),
            Keypoints(t["kp_source_value"], t["kp_source_jacobian"]),
            t["depth_source"],
        )
    for key in ("mask", "occlusion_map", "deformed"):
        assert np.abs(out[key].numpy() - golden[key]).max() < 1e-4, key
    assert out["prediction"].shape == (3, 3, 256, 256)


def _sn_weight(state, prefix):
    w = state[prefix + "weight_orig"]
    sigma = torch.dot(state[prefix + "weight_u"], w.reshape(w.shape[0], -1) @ state[prefix + "weight_v"])
    return w / sigma


def _instance_norm(x):
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5)


def _nearest(x, size):
    rows = (torch.arange(size[0]) * x.shape[2] // size[0]).long()
    cols = (torch.arange(size[1]) * x.shape[3] // size[1]).long()
    return x[:, :, rows][:, :, :, cols]


def _spade(state, prefix, x, condition):
    c = _nearest(condition, x.shape[2:])
    hidden = F.relu(F.conv2d(c, state[prefix + "mlp_shared.0.weight"], state[prefix + "mlp_shared.0.bias"], padding=1))
    gamma = F.conv2d(hidden, state[prefix + "mlp_gamma.weight"], state[prefix + "mlp_gamma.bias"], padding=1)
    beta = F.conv2d(hidden, state[prefix + "mlp_beta.weight"], state[prefix + "mlp_beta.bias"], padding=1)
    return _instance_norm(x) * (1 + gamma) + beta


def _block(state, prefix, x, condition):
    def conv(name, inp, padding):
        bias = state.get(f"{prefix}{name}.bias")
        return F.conv2d(inp, _sn_weight(state, f"{prefix}{name}."), bias, padding=padding)

    if f"{prefix}conv_s.weight_orig" in state:
        shortcut = conv("conv_s", _spade(state, prefix + "norm_s.", x, condition), 0)
    else:
        shortcut = x
    dx = conv("conv_0", F.leaky_relu(_spade(state, prefix + "norm_0.", x, condition), 0.2), 1)
    dx = conv("conv_1", F.leaky_relu(_spade(state, prefix + "norm_1.", dx, condition), 0.2), 1)
    return shortcut + dx


@pytest.mark.slow
def test_decoder_matches_independent_derivation(spade):
    state = {k.removeprefix("decoder."): v for k, v in spade.state_dict().items() if k.startswith("decoder.")}
    g = torch.Generator().manual_seed(0)
    features = torch.rand(2, 256, 64, 64, generator=g)
    image = torch.rand(2, 3, 256, 256, generator=g)
    with torch.inference_mode():
        ours = spade.decoder(features, image)
    compressed = F.conv2d(features, state["compress.weight"], state["compress.bias"], padding=1)
    condition = torch.cat([_nearest(compressed, (256, 256)), image], dim=1)
    x = F.conv2d(features, state["fc.weight"], state["fc.bias"], padding=1)
    for name in ("G_middle_0", "G_middle_1", "G_middle_2"):
        x = _block(state, name + ".", x, condition)
    x = _block(state, "up_0.", x.repeat_interleave(2, 2).repeat_interleave(2, 3), condition)
    x = _block(state, "up_1.", x.repeat_interleave(2, 2).repeat_interleave(2, 3), condition)
    expected = torch.sigmoid(
        F.conv2d(F.leaky_relu(x, 0.2), state["conv_img.weight"], state["conv_img.bias"], padding=1)
    )
    assert ours.shape == (2, 3, 256, 256)
    assert (ours - expected).abs().max() < 1e-4
    assert ours.std() > 0.01
