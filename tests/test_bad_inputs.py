"""Every bad input gets one error line, exit code 2, no traceback, and no output left behind."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from dagan.cli import main
from dagan.errors import DaganError
from dagan.io.atomic import write_frame_manifest
from dagan.io.checkpoint import write_original_checkpoint
from dagan.pipelines import animate as animate_module

from .conftest import make_clip, make_tiny_weights


def _args(files, **overrides):
    values = {
        "--source": files["source"],
        "--driving": files["driving"],
        "--checkpoint": files["checkpoint"],
        "--depth-weights": files["depth"],
    }
    values.update(overrides)
    argv = ["animate", "--quiet"]
    for flag, value in values.items():
        argv += [flag, str(value)]
    return argv


def _expect_clean_error(capsys, argv, fragment):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith("dagan: error:")
    assert fragment in err[0]
    assert "Traceback" not in err[0]


def _no_leftovers(directory):
    return [p.name for p in directory.iterdir() if ".partial" in p.name or p.name.startswith(".")]


def test_missing_source(tiny_files, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    _expect_clean_error(
        capsys, _args(tiny_files, **{"--source": tmp_path / "nope.png", "--output": out}), "does not exist"
    )
    assert not out.exists() and _no_leftovers(tmp_path) == []


def test_missing_checkpoint(tiny_files, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    _expect_clean_error(
        capsys, _args(tiny_files, **{"--checkpoint": tmp_path / "x.pth.tar", "--output": out}), "x.pth.tar"
    )
    assert not out.exists()


def test_source_that_is_not_an_image(tiny_files, tmp_path, capsys):
    fake = tmp_path / "fake.png"
    fake.write_text("this is not a picture")
    out = tmp_path / "out.mp4"
    _expect_clean_error(capsys, _args(tiny_files, **{"--source": fake, "--output": out}), "not a readable image")
    assert not out.exists()


def test_truncated_video(tiny_files, tmp_path, capsys):
    data = tiny_files["driving"].read_bytes()
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.mp4"
    _expect_clean_error(capsys, _args(tiny_files, **{"--driving": bad, "--output": out}), "cut.mp4")
    assert not out.exists() and _no_leftovers(tmp_path) == []


def test_garbage_video(tiny_files, tmp_path, capsys):
    bad = tmp_path / "noise.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(5000))
    _expect_clean_error(capsys, _args(tiny_files, **{"--driving": bad, "--output": tmp_path / "o.mp4"}), "unreadable")


def test_video_with_zero_frames(tiny_files, tmp_path, capsys):
    empty = make_clip(tmp_path / "empty.avi", frames=0)  # AVI keeps a video stream with no frames
    _expect_clean_error(capsys, _args(tiny_files, **{"--driving": empty, "--output": tmp_path / "o.mp4"}), "no frames")
    assert not (tmp_path / "o.mp4").exists()


def test_empty_frame_folder(tiny_files, tmp_path, capsys):
    (tmp_path / "frames").mkdir()
    _expect_clean_error(capsys, _args(tiny_files, **{"--driving": tmp_path / "frames"}), "no image frames")


def test_checkpoint_of_the_wrong_kind(tiny_files, tmp_path, capsys):
    # A depth encoder file passed where a DaGAN checkpoint belongs.
    argv = _args(tiny_files, **{"--checkpoint": tiny_files["depth"] / "encoder.pth", "--output": tmp_path / "o.mp4"})
    _expect_clean_error(capsys, argv, "not a DaGAN checkpoint")


def test_checkpoint_with_wrong_shapes(tiny_files, tmp_path, capsys):
    groups = make_tiny_weights()
    groups["generator"]["AttnModule.value_conv.weight"] = torch.zeros(4, 4, 1, 1)
    bad = tmp_path / "bad.pth.tar"
    write_original_checkpoint(bad, {k: groups[k] for k in ("generator", "kp_detector")})
    argv = _args(tiny_files, **{"--checkpoint": bad, "--output": tmp_path / "o.mp4"})
    _expect_clean_error(capsys, argv, "AttnModule.value_conv.weight")
    assert not (tmp_path / "o.mp4").exists()


def test_depth_weights_of_the_wrong_shape(tiny_files, tmp_path, capsys):
    (tmp_path / "d").mkdir()
    torch.save({"encoder.conv1.weight": torch.zeros(3)}, tmp_path / "d/encoder.pth")
    torch.save({"decoder.0.conv.conv.weight": torch.zeros(3)}, tmp_path / "d/depth.pth")
    _expect_clean_error(capsys, _args(tiny_files, **{"--depth-weights": tmp_path / "d"}), "depth")


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_and_never_runs(tiny_files, tmp_path, capsys):
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pth.tar"
    torch.save({"generator": _Exploit(marker), "kp_detector": {}}, evil)
    _expect_clean_error(capsys, _args(tiny_files, **{"--checkpoint": evil, "--output": tmp_path / "o.mp4"}), "refused")
    assert not marker.exists()


def test_corrupt_checkpoint(tiny_files, tmp_path, capsys):
    bad = tmp_path / "half.pth.tar"
    bad.write_bytes(tiny_files["checkpoint"].read_bytes()[:10000])
    _expect_clean_error(capsys, _args(tiny_files, **{"--checkpoint": bad}), "not a readable PyTorch file")


def test_pickle_that_is_not_a_dict(tiny_files, tmp_path, capsys):
    bad = tmp_path / "list.pth.tar"
    torch.save([torch.zeros(1), 2, 3], bad)
    _expect_clean_error(capsys, _args(tiny_files, **{"--checkpoint": bad}), "not a DaGAN checkpoint")


def test_unwritable_output_path(tiny_files, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    _expect_clean_error(capsys, _args(tiny_files, **{"--output": blocker / "out.mp4"}), "does not exist")
    _expect_clean_error(capsys, _args(tiny_files, **{"--output": f"{blocker}/frames/"}), "cannot write")


def test_output_with_unsupported_extension(tiny_files, tmp_path, capsys):
    _expect_clean_error(capsys, _args(tiny_files, **{"--output": tmp_path / "out.avi"}), ".mp4")


def test_best_frame_past_the_end(tiny_files, tmp_path, capsys):
    _expect_clean_error(capsys, _args(tiny_files, **{"--best-frame": 999, "--output": tmp_path / "o.mp4"}), "999")


def test_failed_run_leaves_good_output_untouched(tiny_files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "result.mp4"
    out.write_bytes(b"a good result from yesterday")
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    (frames_dir / "000000.png").write_bytes(b"old frame")
    write_frame_manifest(frames_dir, ["000000.png"])  # an earlier run's frames, which --overwrite may replace

    real_animate = animate_module.Animator.animate

    def failing(self, *args, **kwargs):
        for i, frame in enumerate(real_animate(self, *args, **kwargs)):
            if i == 2:
                raise animate_module.DaganError("simulated failure in the middle of the video")
            yield frame

    monkeypatch.setattr(animate_module.Animator, "animate", failing)
    _expect_clean_error(capsys, _args(tiny_files, **{"--output": out, "--save-depth": tmp_path / "d.mp4"}), "simulated")
    assert out.read_bytes() == b"a good result from yesterday"
    assert not (tmp_path / "d.mp4").exists()
    _expect_clean_error(capsys, [*_args(tiny_files, **{"--output": f"{frames_dir}/"}), "--overwrite"], "simulated")
    assert sorted(p.name for p in frames_dir.iterdir() if not p.name.startswith(".")) == ["000000.png"]
    assert (frames_dir / "000000.png").read_bytes() == b"old frame"
    assert [p.name for p in tmp_path.iterdir() if ".partial" in p.name] == []


@pytest.mark.slow
def test_console_script_reports_one_line_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dagan", "animate", "--source", str(tmp_path / "missing.png"), "--driving", "x.mp4",
         "--checkpoint", "c.pth.tar", "--depth-weights", "d"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dagan: error:") and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["depth", "train-depth", "export-onnx"])
@pytest.mark.parametrize("size", ["40", "72"])
def test_depth_sizes_the_network_cannot_take_are_refused_up_front(command, size, tmp_path, capsys):
    argv = {
        "depth": ["depth", "--weights", "w", "--input", "x.png", "--out", str(tmp_path / "o")],
        "train-depth": ["train-depth", "--data", "d", "--out", str(tmp_path / "o")],
        "export-onnx": ["export-onnx", "--checkpoint", "c.pth.tar", "--out", str(tmp_path / "o")],
    }[command]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--size", size])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"multiple of 32 pixels, at least 64; got {size}" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_depth_pipelines_check_the_size_too(tiny_files, tmp_path):
    from dagan.pipelines.depth import depth_files
    from dagan.pipelines.depth_train import DepthTrainer, DepthTrainOptions
    from dagan.pipelines.networks import load_animation_networks
    from dagan.pipelines.onnx_backend import export_onnx

    with pytest.raises(DaganError, match="multiple of 32"):
        depth_files(tiny_files["depth"], tiny_files["source"], tmp_path / "o", size=48)
    with pytest.raises(DaganError, match="at least 64"):
        DepthTrainer(DepthTrainOptions(data=tmp_path, out=tmp_path / "run", size=32))
    # Without --size the export takes the model's frame size, which the command line never sees.
    networks = load_animation_networks(tiny_files["checkpoint"], tiny_files["depth"])
    with pytest.raises(DaganError, match="multiple of 32"):
        export_onnx(networks, tmp_path / "onnx", size=80)
    assert not (tmp_path / "o").exists() and not (tmp_path / "run").exists() and not (tmp_path / "onnx").exists()
