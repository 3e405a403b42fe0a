"""Training: exact resume, 2-process DDP (gloo), learning on synthetic data, checkpoints that animate."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml

from dagan.cli import main
from dagan.config import load_config
from dagan.data.synth import write_dataset
from dagan.errors import DaganError
from dagan.io.checkpoint import read_dagan_checkpoint
from dagan.pipelines.memory import find_tcmalloc
from dagan.pipelines.networks import load_animation_networks
from dagan.pipelines.train import TrainOptions, train

from .conftest import REPO
from .saved_tensors import saved_bytes

TINY_CONFIG = REPO / "configs" / "tiny-64.yaml"


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, identities=5, clips_per_identity=2, frames=12, size=64, seed=3, quiet=True)
    return root


@pytest.fixture(scope="module")
def depth_dir(tiny_files):
    return tiny_files["depth"]


def _options(data, out, depth, **kwargs) -> TrainOptions:
    defaults = dict(
        config=TINY_CONFIG, workers=0, quiet=True, checkpoint_every=1000, validate_every=1000, visualize_every=1000
    )
    defaults.update(kwargs)
    return TrainOptions(data=data, out=out, depth_weights=depth, **defaults)


def _state(result) -> dict[str, torch.Tensor]:
    out = {}
    for name in ("kp_detector", "generator", "discriminator"):
        out.update({f"{name}.{k}": v.detach().clone() for k, v in getattr(result, name).state_dict().items()})
    return out


@pytest.mark.slow
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(synth_data, depth_dir, tmp_path):
    straight = train(_options(synth_data, tmp_path / "straight", depth_dir, max_steps=5))
    train(_options(synth_data, tmp_path / "split", depth_dir, max_steps=3))
    resumed = train(_options(synth_data, tmp_path / "split", depth_dir, max_steps=5, resume=True))
    a, b = _state(straight), _state(resumed)
    assert resumed.step == straight.step == 5
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_run_with_the_demo_models_options_records_them_and_resume_keeps_them(synth_data, depth_dir, tmp_path):
    values = yaml.safe_load(TINY_CONFIG.read_text())
    values["model"]["generator"]["dense_motion"]["align_corners"] = True
    values["model"]["generator"]["blend_deformed"] = True
    aligned = tmp_path / "aligned.yaml"
    aligned.write_text(yaml.safe_dump(values))
    run = tmp_path / "run"
    train(_options(synth_data, run, depth_dir, config=aligned, max_steps=1))
    networks = load_animation_networks(run / "checkpoint.pth.tar", depth_dir)
    assert networks.generator.dense_motion_network.config.align_corners is True
    assert networks.generator.blend is not None
    with pytest.raises(DaganError, match="align_corners"):
        train(_options(synth_data, run, depth_dir, max_steps=2, resume=True))


def test_checkpoint_has_the_original_layout_and_animates(synth_data, depth_dir, tmp_path, tiny_files):
    run = tmp_path / "run"
    assert main(["train", "--config", str(TINY_CONFIG), "--data", str(synth_data), "--out", str(run),
                 "--max-steps", "2", "--depth-weights", str(depth_dir), "--workers", "0", "--quiet"]) == 0  # fmt: skip
    checkpoint = run / "checkpoint.pth.tar"
    raw = torch.load(checkpoint, weights_only=True)
    for key in ("generator", "kp_detector", "discriminator", "optimizer_generator", "optimizer_discriminator",
                "optimizer_kp_detector", "epoch"):  # fmt: skip
        assert key in raw, key
    assert set(read_dagan_checkpoint(checkpoint).groups) == {"generator", "kp_detector", "discriminator"}
    assert (run / "log.jsonl").is_file() and list((run / "visuals").glob("*.png"))
    assert list((run / "tensorboard").iterdir())
    out = tmp_path / "animated"
    clip = sorted((synth_data / "test").glob("*.mp4"))[0]
    argv = ["animate", "--source", str(tiny_files["source"]), "--driving", str(clip), "--checkpoint",
            str(checkpoint), "--depth-weights", str(depth_dir), "--output", f"{out}/", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert len(list(out.glob("*.png"))) == 12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, data: str, depth: str, out: str) -> None:
    os.environ.update(
        {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": str(world),
         "LOCAL_RANK": str(rank)}
    )  # fmt: skip
    torch.set_num_threads(1)
    result = train(_options(Path(data), Path(out), Path(depth), max_steps=1, device="cpu"))
    torch.save(_state(result), Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_ranks_hold_identical_weights(synth_data, depth_dir, tmp_path):
    port = _free_port()
    mp.spawn(_ddp_worker, args=(2, port, str(synth_data), str(depth_dir), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert (tmp_path / "checkpoint.pth.tar").is_file()


@pytest.mark.slow
def test_short_run_on_synthetic_data_learns(synth_data, depth_dir, tmp_path):
    result = train(_options(synth_data, tmp_path / "learn", depth_dir, max_steps=40, validate_every=40, seed=1))
    first, last = result.validation[0]["val_l1"], result.validation[-1]["val_l1"]
    assert last < 0.8 * first, (first, last)


def test_tiny_config_reads():
    config = load_config(TINY_CONFIG)
    assert config.model.generator.block_expansion == 8 and config.train.perceptual_backbone == "l1_pyramid"


def test_missing_vgg_weights_fail_at_start_with_a_clear_message(synth_data, depth_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    config = tmp_path / "vgg.yaml"
    config.write_text(TINY_CONFIG.read_text().replace("perceptual_backbone: l1_pyramid", "perceptual_backbone: vgg19"))
    argv = ["train", "--config", str(config), "--data", str(synth_data), "--out", str(tmp_path / "run"),
            "--depth-weights", str(depth_dir), "--max-steps", "1", "--quiet"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "VGG19" in err[0] and "--vgg-weights" in err[0]
    assert not (tmp_path / "run" / "checkpoint.pth.tar").exists()


def test_torchvision_vgg19_checkpoint_layout_loads(tmp_path):
    from dagan.nn.vgg import VGG19Features
    from dagan.pipelines.train import load_vgg19

    features = VGG19Features().state_dict()
    full = {f"features.{k}": v for k, v in features.items()}
    full["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(full, tmp_path / "vgg19-dcbb9e9d.pth")
    vgg = load_vgg19(tmp_path / "vgg19-dcbb9e9d.pth")
    assert torch.equal(vgg.state_dict()["34.weight"], features["34.weight"])
    assert len(vgg(torch.rand(1, 3, 32, 32))) == 5


def test_vgg19_features_match_torchvisions_layer_for_layer():
    import torchvision

    from dagan.nn.vgg import SLICE_ENDS, VGG19Features

    torch.manual_seed(0)
    reference = torchvision.models.vgg19(weights=None).features.eval()
    ours = VGG19Features()
    assert [type(m) for m in ours] == [type(m) for m in reference]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    ours.load_state_dict(reference.state_dict(), strict=True)
    image = torch.rand(1, 3, 64, 64)
    x = (image - ours.mean) / ours.std
    expected = []
    for index, layer in enumerate(reference):
        x = layer(x)
        if index in SLICE_ENDS:
            expected.append(x.clone())
    got = ours(image)
    assert len(got) == len(expected) == 5
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("size", [64, 37, 50])
def test_frozen_vgg19_keeps_less_for_backward_and_gives_the_same_input_gradient(size):
    import torchvision

    from dagan.nn.vgg import SLICE_ENDS, VGG19Features

    torch.manual_seed(size)
    reference = torchvision.models.vgg19(weights=None).features.requires_grad_(False)
    ours = VGG19Features()
    ours.load_state_dict(reference.state_dict(), strict=True)
    image = torch.rand(2, 3, size, size)
    weights = [torch.rand(2, c, 1, 1) for c in (64, 128, 256, 512, 512)]

    def plain():
        x = image.clone().requires_grad_(True)
        y, outputs = (x - ours.mean) / ours.std, []
        for index, layer in enumerate(reference[: SLICE_ENDS[-1] + 1]):
            y = layer(y)
            if index in SLICE_ENDS:
                outputs.append(y)
        return x, outputs

    def frozen():
        x = image.clone().requires_grad_(True)
        return x, ours(x)

    (x_plain, out_plain), kept_plain = saved_bytes(plain)
    (x_frozen, out_frozen), kept_frozen = saved_bytes(frozen)
    assert kept_frozen < 0.4 * kept_plain
    for a, b in zip(out_frozen, out_plain, strict=True):
        assert torch.equal(a, b)
    sum((w * o).sum() for w, o in zip(weights, out_plain, strict=True)).backward()
    sum((w * o).sum() for w, o in zip(weights, out_frozen, strict=True)).backward()
    assert torch.equal(x_frozen.grad, x_plain.grad)


def test_a_fresh_run_never_overwrites_an_earlier_one(synth_data, depth_dir, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pth.tar").write_bytes(b"an earlier run")
    argv = ["train", "--config", str(TINY_CONFIG), "--data", str(synth_data), "--out", str(run),
            "--depth-weights", str(depth_dir), "--max-steps", "1", "--quiet", "--workers", "0"]  # fmt: skip
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    assert (run / "checkpoint.pth.tar").read_bytes() == b"an earlier run"
    assert main(["train", "--config", str(TINY_CONFIG), "--data", str(synth_data), "--out", str(tmp_path / "new"),
                 "--depth-weights", str(depth_dir), "--resume", "--quiet"]) == 2  # fmt: skip


def test_unavailable_device_is_a_clean_error(tiny_files, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv = ["animate", "--source", str(tiny_files["source"]), "--driving", str(tiny_files["driving"]),
            "--checkpoint", str(tiny_files["checkpoint"]), "--depth-weights", str(tiny_files["depth"]),
            "--device", "cuda", "--quiet"]  # fmt: skip
    assert main(argv) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.slow
def test_bf16_training_runs_and_checkpoints(synth_data, depth_dir, tmp_path):
    fp32 = train(_options(synth_data, tmp_path / "fp32", depth_dir, max_steps=2))
    bf16 = train(_options(synth_data, tmp_path / "bf16", depth_dir, max_steps=2, precision="bf16"))
    a, b = _state(fp32), _state(bf16)
    assert all(torch.isfinite(v).all() for v in b.values() if v.is_floating_point())
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())  # bf16 really took effect
    saved = torch.load(tmp_path / "bf16" / "checkpoint.pth.tar", weights_only=True)
    assert "grad_scaler_generator" in saved


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None, reason="torch.compile on CPU needs a C compiler")
def test_compiled_training_takes_the_same_first_step_and_keeps_the_checkpoint_keys(synth_data, depth_dir, tmp_path):
    """--compile compiles the networks, not the objective: a compiled objective crashed on the
    equivariance Jacobian's double backward. The first step's losses are eager's to rounding.
    (One step through ``train_step``: the run's validation passes would compile eval graphs too.)"""
    from dagan.pipelines.train import Trainer

    losses, keys = {}, {}
    for name, compiled in (("eager", False), ("compiled", True)):
        trainer = Trainer(_options(synth_data, tmp_path / name, depth_dir, compile=compiled))
        trainer.start_training()
        batch = next(iter(trainer.loader()))
        losses[name] = trainer.train_step(batch["source"], batch["driving"])
        saved = torch.load(trainer.save_checkpoint(), weights_only=True)
        keys[name] = {part: set(saved[part]) for part in ("generator", "kp_detector", "discriminator")}
    assert keys["compiled"] == keys["eager"]
    assert not any("_orig_mod" in key for part in keys["compiled"].values() for key in part)
    assert losses["eager"].keys() == losses["compiled"].keys() and "equivariance_jacobian" in losses["eager"]
    for key, value in losses["eager"].items():
        assert losses["compiled"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def test_fp16_training_on_cpu_is_refused(synth_data, depth_dir, tmp_path, capsys):
    code = main(["train", "--config", str(TINY_CONFIG), "--data", str(synth_data), "--out", str(tmp_path / "run"),
                 "--depth-weights", str(depth_dir), "--precision", "fp16", "--device", "cpu", "--max-steps", "1",
                 "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "bf16" in err and "Traceback" not in err


@pytest.mark.slow
def test_a_run_without_adversarial_terms_crosses_epochs_without_scheduler_warnings(synth_data, depth_dir, tmp_path):
    config = load_config(TINY_CONFIG)
    weights = dataclasses.replace(
        config.train.loss_weights, generator_gan=0, discriminator_gan=0, feature_matching=(0, 0, 0, 0)
    )
    config.train = dataclasses.replace(config.train, loss_weights=weights, epoch_milestones=(1,))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(_options(synth_data, tmp_path / "no_gan", depth_dir, max_steps=12), config)
    assert result.step == 12
    assert not [w for w in caught if "lr_scheduler" in str(w.message)]
    state = torch.load(tmp_path / "no_gan" / "checkpoint.pth.tar", weights_only=True)
    assert state["epoch"] >= 1 and state["scheduler_generator"]["last_epoch"] == state["epoch"]


def test_the_run_log_is_written_without_tensorboard(tmp_path, monkeypatch):
    import json
    import sys

    import numpy as np

    from dagan.pipelines.distributed import RunLog

    # An import of a module set to None raises ImportError: tensorboard "not installed".
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    log = RunLog(tmp_path)
    log.scalars({"step": 1, "loss": 0.5})
    log.image("visual", np.zeros((8, 8, 3), np.float32), 1)
    log.close()
    assert json.loads((tmp_path / "log.jsonl").read_text()) == {"step": 1, "loss": 0.5}
    assert (tmp_path / "visuals" / "step_00000001.png").is_file() and not (tmp_path / "tensorboard").exists()


@pytest.mark.slow
@pytest.mark.skipif(
    find_tcmalloc() is None, reason="no libtcmalloc_minimal here (Debian: apt-get install libtcmalloc-minimal4)"
)
def test_training_under_tcmalloc_writes_the_same_checkpoint(synth_data, depth_dir, tmp_path):
    # --allocator tcmalloc re-runs the command in a new process: only a subprocess can show it.
    def run(out: Path, *extra: str) -> dict:
        argv = [sys.executable, "-m", "dagan", "train", "--config", str(TINY_CONFIG), "--data", str(synth_data),
                "--out", str(out), "--max-steps", "2", "--depth-weights", str(depth_dir), "--workers", "0",
                "--quiet", *extra]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return torch.load(out / "checkpoint.pth.tar", weights_only=True)

    plain, tcmalloc = run(tmp_path / "plain"), run(tmp_path / "tcmalloc", "--allocator", "tcmalloc")
    for group in ("generator", "kp_detector", "discriminator"):
        for key, tensor in plain[group].items():
            assert torch.equal(tcmalloc[group][key], tensor), (group, key)
