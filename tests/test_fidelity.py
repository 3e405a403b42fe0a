"""Frame-for-frame fidelity against the original implementation's golden outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dagan.cli import main
from dagan.config import DepthConfig, ModelConfig
from dagan.motion import movement_scale, transfer_motion
from dagan.nn import (
    DepthAwareGenerator,
    KeypointDetector,
    MultiScaleDiscriminator,
    SPADEDepthAwareGenerator,
)
from dagan.nn.common import Keypoints
from dagan.nn.depth_decoder import DepthDecoder
from dagan.nn.depth_encoder import DepthEncoder
from dagan.nn.face_depth import FaceDepthNetwork

from .conftest import DATA, REFERENCE, needs_shared

KP_TOL = 1e-5
IMAGE_TOL = 1e-4
VOX = ModelConfig().with_num_kp(15)


def _modules():
    import dataclasses

    return {
        "generator": lambda: DepthAwareGenerator(VOX.generator),
        "generator_spade": lambda: SPADEDepthAwareGenerator(dataclasses.replace(VOX.generator, variant="spade")),
        "kp_detector": lambda: KeypointDetector(VOX.kp_detector),
        "discriminator": lambda: MultiScaleDiscriminator(VOX.discriminator),
        "depth_encoder_resnet18": lambda: DepthEncoder(DepthConfig(num_layers=18)),
        "depth_encoder_resnet50": lambda: DepthEncoder(DepthConfig(num_layers=50)),
        "depth_decoder_resnet18": lambda: DepthDecoder(DepthEncoder(DepthConfig(num_layers=18)).num_ch_enc),
        "depth_decoder_resnet50": lambda: DepthDecoder(DepthEncoder(DepthConfig(num_layers=50)).num_ch_enc),
    }


@needs_shared
@pytest.mark.parametrize("name", list(_modules()))
def test_state_dict_matches_manifest(name):
    manifest = json.loads((REFERENCE / "manifests" / f"{name}.json").read_text())["entries"]
    state = _modules()[name]().state_dict()
    assert list(state) == [e["key"] for e in manifest]
    for entry in manifest:
        assert list(state[entry["key"]].shape) == entry["shape"], entry["key"]
        assert str(state[entry["key"]].dtype) == entry["dtype"], entry["key"]


@pytest.fixture(scope="module")
def golden_nets(golden_state_dicts):
    torch.set_grad_enabled(False)
    depth = FaceDepthNetwork(DepthConfig(num_layers=18))
    depth.encoder.load_state_dict(golden_state_dicts["depth_encoder_resnet18"], strict=True)
    depth.decoder.load_state_dict(golden_state_dicts["depth_decoder_resnet18"], strict=True)
    kp = KeypointDetector(VOX.kp_detector)
    kp.load_state_dict(golden_state_dicts["kp_detector"], strict=True)
    gen = DepthAwareGenerator(VOX.generator)
    gen.load_state_dict(golden_state_dicts["generator"], strict=True)
    yield {"depth": depth.eval(), "kp": kp.eval(), "generator": gen.eval()}
    torch.set_grad_enabled(True)


def _t(golden, key):
    return torch.from_numpy(golden[key])


def _max_diff(a: torch.Tensor, b: np.ndarray) -> float:
    return float(np.abs(a.detach().numpy() - b).max())


def test_depth_matches_golden(golden_nets, golden):
    assert _max_diff(golden_nets["depth"](_t(golden, "source")), golden["depth_source"]) < IMAGE_TOL
    assert _max_diff(golden_nets["depth"](_t(golden, "driving")), golden["depth_driving"]) < IMAGE_TOL


@pytest.mark.parametrize(
    "image, depth, prefix",
    [
        ("source", "depth_source", "kp_source"),
        ("driving", "depth_driving", "kp_driving"),
    ],
)
def test_keypoints_match_golden(golden_nets, golden, image, depth, prefix):
    kp = golden_nets["kp"](torch.cat([_t(golden, image), _t(golden, depth)], dim=1))
    assert _max_diff(kp.value, golden[f"{prefix}_value"]) < KP_TOL
    assert _max_diff(kp.jacobian, golden[f"{prefix}_jacobian"]) < KP_TOL


def test_initial_keypoints_match_golden(golden_nets, golden):
    kp = golden_nets["kp"](torch.cat([_t(golden, "driving")[:1], _t(golden, "depth_driving")[:1]], dim=1))
    assert _max_diff(kp.value, golden["kp_driving_initial_value"]) < KP_TOL
    assert _max_diff(kp.jacobian, golden["kp_driving_initial_jacobian"]) < KP_TOL


def _golden_kp(golden, prefix):
    return Keypoints(_t(golden, f"{prefix}_value"), _t(golden, f"{prefix}_jacobian"))


def test_relative_motion_matches_golden(golden):
    source, initial = _golden_kp(golden, "kp_source"), _golden_kp(golden, "kp_driving_initial")
    scale = movement_scale(source, initial)
    kp = transfer_motion(source, _golden_kp(golden, "kp_driving"), initial, relative=True, scale=scale)
    assert _max_diff(kp.value, golden["kp_norm_value"]) < KP_TOL
    assert _max_diff(kp.jacobian, golden["kp_norm_jacobian"]) < KP_TOL


def test_generator_matches_golden(golden_nets, golden):
    out = golden_nets["generator"](
        _t(golden, "source"),
        _golden_kp(golden, "kp_norm"),
        _golden_kp(golden, "kp_source"),
        _t(golden, "depth_source"),
        _t(golden, "depth_driving"),
    )
    for key in ("mask", "occlusion_map", "deformed", "prediction"):
        assert _max_diff(out[key], golden[key]) < IMAGE_TOL, key


@pytest.mark.slow
def test_generator_with_cached_source_encoding_is_identical(golden_nets, golden):
    gen = golden_nets["generator"]
    args = (
        _t(golden, "source"),
        _golden_kp(golden, "kp_norm"),
        _golden_kp(golden, "kp_source"),
        _t(golden, "depth_source"),
    )
    plain = gen(*args)["prediction"]
    cached = gen(*args, encoding=gen.encode_source(args[0], args[3]))["prediction"]
    assert torch.equal(plain, cached)


@pytest.mark.slow
def test_animate_cli_matches_golden_end_to_end(golden_files, golden, tmp_path):
    out = tmp_path / "frames"
    code = main(
        [
            "animate",
            "--source", str(DATA / "src_256.png"),
            "--driving", str(golden_files["frames"]),
            "--checkpoint", str(golden_files["checkpoint"]),
            "--depth-weights", str(golden_files["depth"]),
            "--output", f"{out}/",
            "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == ["000000.png", "000001.png", "000002.png"]
    for i, file in enumerate(files):
        frame = np.asarray(Image.open(file)).astype(np.float64) / 255
        assert np.abs(frame - golden["prediction"][i].transpose(1, 2, 0)).max() <= 2 / 255
