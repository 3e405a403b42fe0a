"""Checkpoint loading: formats, prefixes, architecture detection, conversion and refusals."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
import torch

from dagan.cli import main
from dagan.errors import DaganError
from dagan.io.checkpoint import (
    DEPTH_CLASSIFIER_KEYS,
    infer_depth_config,
    infer_model_config,
    read_dagan_checkpoint,
    read_depth_weights,
    read_safetensors,
    strip_wrapper_prefixes,
    write_original_checkpoint,
    write_safetensors,
)
from dagan.pipelines.networks import load_animation_networks

from .conftest import make_tiny_weights, tiny_model_config, write_aligned_training_checkpoint


def test_strip_wrapper_prefixes_handles_both_forms():
    state = {"module.first.conv.weight": 1, "dense_motion_network.module.mask.bias": 2, "module.module.final.bias": 3}
    assert strip_wrapper_prefixes(state) == {
        "first.conv.weight": 1,
        "dense_motion_network.mask.bias": 2,
        "final.bias": 3,
    }


@pytest.mark.parametrize("variant", ["depth_aware", "spade"])
@pytest.mark.parametrize("num_kp", [5, 10])
def test_architecture_is_read_from_tensors(tmp_path, variant, num_kp):
    groups = make_tiny_weights(variant=variant, num_kp=num_kp)
    path = tmp_path / "ckpt.pth.tar"
    write_original_checkpoint(path, {k: groups[k] for k in ("generator", "kp_detector")})
    config = infer_model_config(read_dagan_checkpoint(path))
    expected = tiny_model_config(variant, num_kp)
    if variant == "spade":  # the SPADE decoder has no bottleneck blocks to count
        expected = dataclasses.replace(
            expected, generator=dataclasses.replace(expected.generator, num_bottleneck_blocks=0)
        )
    assert config.generator == expected.generator
    assert config.kp_detector == expected.kp_detector


def test_full_training_checkpoint_with_prefixes_loads(tmp_path):
    groups = make_tiny_weights()
    payload = {
        "generator": {f"module.{k}": v for k, v in groups["generator"].items()},
        "kp_detector": {f"module.{k}": v for k, v in groups["kp_detector"].items()},
        "optimizer_generator": {"state": {}, "param_groups": [{"lr": 2e-4, "betas": (0.5, 0.999), "params": [0]}]},
        "optimizer_kp_detector": {"state": {}, "param_groups": []},
        "optimizer_discriminator": {"state": {}, "param_groups": []},
        "epoch": 12,
    }
    torch.save(payload, tmp_path / "full.pth.tar")
    weights = read_dagan_checkpoint(tmp_path / "full.pth.tar")
    assert set(weights.groups) == {"generator", "kp_detector"}
    assert weights.metadata["epoch"] == 12
    assert torch.equal(weights.groups["generator"]["final.weight"], groups["generator"]["final.weight"])


def test_depth_encoder_extra_keys_are_read_as_metadata(tmp_path):
    groups = make_tiny_weights()
    (tmp_path / "w").mkdir()
    torch.save(
        {**groups["depth_encoder"], "height": 192, "width": 640, "use_stereo": False}, tmp_path / "w/encoder.pth"
    )
    torch.save(groups["depth_decoder"], tmp_path / "w/depth.pth")
    weights = read_depth_weights(tmp_path / "w")
    assert weights.metadata == {"height": 192, "width": 640, "use_stereo": False}
    config = infer_depth_config(weights)
    assert (config.num_layers, config.height, config.width) == (18, 192, 640)


def test_resnet50_depth_is_detected(reference):
    from dagan.io.checkpoint import WeightFile

    enc = reference.make_state_dict(reference.load_manifest("depth_encoder_resnet50"), 0)
    dec = reference.make_state_dict(reference.load_manifest("depth_decoder_resnet50"), 0)
    config = infer_depth_config(WeightFile({"depth_encoder": enc, "depth_decoder": dec}, {}, "r50"))
    assert config.num_layers == 50


def test_safetensors_roundtrip_gives_identical_frames(tiny_files, tmp_path):
    st = tmp_path / "model.safetensors"
    assert main(["convert", str(tiny_files["checkpoint"]), str(st), "--depth-weights", str(tiny_files["depth"])]) == 0
    assert set(read_safetensors(st).groups) == {"generator", "kp_detector", "depth_encoder", "depth_decoder"}
    back = tmp_path / "back.pth.tar"
    assert main(["convert", str(st), str(back)]) == 0
    original = load_animation_networks(tiny_files["checkpoint"], tiny_files["depth"])
    for path, depth in ((st, None), (back, tiny_files["depth"])):
        loaded = load_animation_networks(path, depth)
        for name in ("generator", "kp_detector"):
            a, b = getattr(original, name).state_dict(), getattr(loaded, name).state_dict()
            assert all(torch.equal(a[k], b[k]) for k in a), (path, name)


def test_depth_folder_converts_to_safetensors_and_back(tiny_files, tmp_path):
    st = tmp_path / "depth.safetensors"
    assert main(["convert", str(tiny_files["depth"]), str(st)]) == 0
    assert main(["convert", str(st), str(tmp_path / "depth_back")]) == 0
    a = read_depth_weights(tiny_files["depth"])
    b = read_depth_weights(tmp_path / "depth_back")
    assert b.metadata["height"] == 256 and b.metadata["use_stereo"] is False
    for group in a.groups:
        assert all(torch.equal(a.groups[group][k], b.groups[group][k]) for k in a.groups[group])


@pytest.mark.parametrize("inference_only", [False, True])
def test_a_full_model_file_gives_up_its_depth_network_as_a_folder(tiny_files, tmp_path, inference_only):
    st = tmp_path / "model.safetensors"
    argv = ["convert", str(tiny_files["checkpoint"]), str(st), "--depth-weights", str(tiny_files["depth"])]
    assert main(argv + ["--inference-only"] * inference_only) == 0
    assert main(["convert", str(st), str(tmp_path / "depth")]) == 0
    a, b = read_depth_weights(tiny_files["depth"]), read_depth_weights(tmp_path / "depth")
    assert set(b.groups) == {"depth_encoder", "depth_decoder"}
    for group in a.groups:
        for key in a.groups[group]:
            # A classifier left out by --inference-only comes back as zeros: the original loads it strictly.
            expected = a.groups[group][key] * (0 if inference_only and key in DEPTH_CLASSIFIER_KEYS else 1)
            assert torch.equal(expected, b.groups[group][key]), key
    # A DaGAN .pth.tar (with or without depth weights) has no folder form.
    assert main(["convert", str(tiny_files["checkpoint"]), str(tmp_path / "nothing")]) == 2
    assert main(argv[:2] + [str(tmp_path / "nothing"), *argv[3:]]) == 2


def test_half_precision_safetensors_loads_as_float32(tiny_files, tmp_path):
    st = tmp_path / "half.safetensors"
    assert main(["convert", str(tiny_files["checkpoint"]), str(st), "--half"]) == 0
    weights = read_safetensors(st)
    tensor = weights.groups["generator"]["final.weight"]
    assert tensor.dtype == torch.float32
    original = read_dagan_checkpoint(tiny_files["checkpoint"]).groups["generator"]["final.weight"]
    assert torch.allclose(tensor, original, atol=1e-3, rtol=1e-3)


def test_misshaped_checkpoint_names_the_keys(tmp_path):
    groups = make_tiny_weights()
    groups["generator"]["final.weight"] = torch.zeros(3, 8, 5, 5)
    del groups["generator"]["final.bias"]
    write_original_checkpoint(tmp_path / "bad.pth.tar", {k: groups[k] for k in ("generator", "kp_detector")})
    with pytest.raises(DaganError) as info:
        load_animation_networks(tmp_path / "bad.pth.tar", None)
    message = str(info.value)
    assert "final.bias" in message and "missing" in message
    assert "final.weight" in message and "mis-shaped" in message
    assert "\n" not in message


def test_unexpected_keys_are_named(tmp_path):
    groups = make_tiny_weights()
    groups["kp_detector"]["extra_head.weight"] = torch.zeros(2)
    write_original_checkpoint(tmp_path / "extra.pth.tar", {k: groups[k] for k in ("generator", "kp_detector")})
    with pytest.raises(DaganError, match="1 unexpected: extra_head.weight"):
        load_animation_networks(tmp_path / "extra.pth.tar", None)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pth.tar", "wb") as handle:
        pickle.dump({"generator": _Exploit(marker), "kp_detector": {}}, handle)
    with pytest.raises(DaganError, match="refused"):
        read_dagan_checkpoint(tmp_path / "evil.pth.tar")
    assert not marker.exists()


def test_the_aligned_warp_convention_travels_from_training_to_animation_and_back(tiny_files, tmp_path):
    trained = write_aligned_training_checkpoint(tmp_path / "trained.pth.tar")
    assert infer_model_config(read_dagan_checkpoint(trained)).generator.dense_motion.align_corners is True
    st = tmp_path / "model.safetensors"
    assert main(["convert", str(trained), str(st), "--depth-weights", str(tiny_files["depth"]), "--half"]) == 0
    back = tmp_path / "back.pth.tar"
    assert main(["convert", str(st), str(back)]) == 0
    for path, depth in ((st, None), (back, tiny_files["depth"])):
        networks = load_animation_networks(path, depth)
        assert networks.generator.dense_motion_network.config.align_corners is True, path
        assert networks.frame_size == 64, path
    # Published and original-format checkpoints keep the original's convention...
    original = load_animation_networks(tiny_files["checkpoint"], tiny_files["depth"])
    assert original.generator.dense_motion_network.config.align_corners is False
    # ...even when their depth network comes from an aligned model's file.
    mixed = tmp_path / "mixed.safetensors"
    assert main(["convert", str(tiny_files["checkpoint"]), str(mixed), "--depth-weights", str(st)]) == 0
    assert load_animation_networks(mixed).generator.dense_motion_network.config.align_corners is False


def test_an_invalid_recorded_warp_convention_is_refused(tmp_path):
    groups = make_tiny_weights()
    path = tmp_path / "odd.safetensors"
    write_safetensors(path, {k: groups[k] for k in ("generator", "kp_detector")}, {"align_corners": "yes"})
    with pytest.raises(DaganError, match="align_corners"):
        load_animation_networks(path, None)
